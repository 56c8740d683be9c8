from django.urls import path

from . import views

urlpatterns = [path("", views.message_centre), path("messages", views.message_centre)]
