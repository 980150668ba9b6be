from django.contrib import admin

from .models import OfferAccess, Partner, PartnerPostback

admin.site.register(Partner)
admin.site.register(OfferAccess)
admin.site.register(PartnerPostback)
