from django.apps import AppConfig


class ChatroomsConfig(AppConfig):
    name = "chatrooms"
    verbose_name = "Chat rooms"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.core.signals import setting_changed
        from django.db.models.signals import post_delete, post_save, pre_save

        from chatrooms import receivers

        user_logged_out.connect(receivers.close_sockets_on_sign_out, dispatch_uid="chat-sign-out")
        user = get_user_model()
        pre_save.connect(receivers.note_password_change, sender=user, dispatch_uid="chat-pw-note")
        post_save.connect(
            receivers.close_sockets_on_password_change, sender=user, dispatch_uid="chat-pw-close"
        )
        post_save.connect(receivers.forget_cached_user, sender=user, dispatch_uid="chat-user-cache")
        post_delete.connect(
            receivers.forget_cached_user, sender=user, dispatch_uid="chat-user-cache-delete"
        )
        setting_changed.connect(receivers.choose_hub_backend, dispatch_uid="chat-hub-backend")
