from django.apps import AppConfig


class ChatroomsConfig(AppConfig):
    name = "chatrooms"
    verbose_name = "Chat rooms"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from chatrooms import receivers

        user_logged_out.connect(receivers.close_sockets_on_sign_out, dispatch_uid="chat-sign-out")
