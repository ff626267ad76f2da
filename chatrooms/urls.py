from django.urls import path

from chatrooms import views

app_name = "chatrooms"

urlpatterns = [
    path("", views.lobby, name="lobby"),
    path("new/", views.room_create, name="room_create"),
    path("enter/", views.room_enter, name="room_enter"),
    path("invite/<str:token>/", views.invite_redeem, name="invite_redeem"),
    path("<slug:slug>/", views.room_detail, name="room_detail"),
    path("<slug:slug>/settings/", views.room_settings, name="room_settings"),
    path("<slug:slug>/leave/", views.room_leave, name="room_leave"),
]
