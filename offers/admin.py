from django.contrib import admin

from .models import Advertiser, Cap, Goal, Offer, Payout

admin.site.register(Advertiser)
admin.site.register(Offer)
admin.site.register(Goal)
admin.site.register(Payout)
admin.site.register(Cap)
