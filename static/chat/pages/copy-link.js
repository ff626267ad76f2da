// The room settings page's "Copy link" buttons (templates/chatrooms/room_settings.html):
// a file, not an inline script, so that the Content-Security-Policy allows it.
// Each button names, in data-copy, the id of the box whose text it copies.
(function () {
  "use strict";
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.dataset.copy);
      input.select();
      var done = function () { button.textContent = "Copied"; };
      // The Clipboard API needs a secure context (https, or localhost);
      // a plain-HTTP LAN trial falls back to the selection and execCommand.
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(input.value).then(done, function () {
          document.execCommand("copy");
          done();
        });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  });
})();
