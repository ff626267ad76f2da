from django.urls import path

from chatrooms import views

app_name = "chatrooms"

urlpatterns = [
    path("", views.lobby, name="lobby"),
    path("new/", views.room_create, name="room_create"),
    path("enter/", views.room_enter, name="room_enter"),
    path("<slug:slug>/", views.room_detail, name="room_detail"),
]
