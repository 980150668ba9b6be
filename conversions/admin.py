from django.contrib import admin

from .models import Click, Conversion, Postback, PostbackDelivery

admin.site.register(Click)
admin.site.register(Postback)
admin.site.register(Conversion)
admin.site.register(PostbackDelivery)
