// Asks before a form marked data-confirm="<button label>" is sent (the room
// settings page: Kick, Ban, Make owner, Archive room): a modal <dialog> shows
// the question and its consequence from the form's <template class="confirm-text">
// (server-rendered, names isolated in <bdi>), with Cancel focused; Esc cancels.
// Confirming drops the form's `ask` field, which otherwise makes the server
// answer with a confirmation page: without this script the page asks instead.
// A file, not an inline script, so that the Content-Security-Policy allows it.
(function () {
  "use strict";
  var forms = document.querySelectorAll("form[data-confirm]");
  if (!forms.length || typeof HTMLDialogElement !== "function") return;

  function make(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  var dialog = make("dialog", "confirm-dialog border-0 rounded-3 shadow p-4");
  dialog.setAttribute("aria-labelledby", "confirm-dialog-question");
  dialog.setAttribute("aria-describedby", "confirm-dialog-consequence");
  var text = make("div");
  var buttons = make("div", "d-flex justify-content-end gap-2 mt-3");
  var cancel = make("button", "btn btn-outline-secondary", "Cancel");
  var ok = make("button", "btn btn-danger");
  cancel.type = "button";
  ok.type = "button";
  buttons.append(cancel, ok);
  dialog.append(text, buttons);
  document.body.appendChild(dialog);

  var pending = null; // the form waiting for an answer
  var opener = null; // focus goes back there on Cancel

  cancel.addEventListener("click", function () { dialog.close("cancel"); });
  ok.addEventListener("click", function () { dialog.close("confirm"); });
  // Esc closes a modal dialog by itself, with the returnValue left "".
  dialog.addEventListener("close", function () {
    var form = pending;
    pending = null;
    if (form && dialog.returnValue === "confirm") {
      var ask = form.querySelector('input[name="ask"]');
      if (ask) ask.remove();
      form.submit(); // no submit event: not asked twice
    } else if (opener && opener.isConnected) {
      opener.focus();
    }
  });

  forms.forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var source = form.querySelector("template.confirm-text");
      if (!source || dialog.open) return;
      event.preventDefault();
      text.replaceChildren(source.content.cloneNode(true));
      var question = text.querySelector(".confirm-question");
      var consequence = text.querySelector(".confirm-consequence");
      if (question) question.id = "confirm-dialog-question";
      if (consequence) consequence.id = "confirm-dialog-consequence";
      ok.textContent = form.dataset.confirm;
      pending = form;
      opener = event.submitter || document.activeElement;
      dialog.returnValue = "";
      dialog.showModal();
      cancel.focus();
    });
  });
})();
