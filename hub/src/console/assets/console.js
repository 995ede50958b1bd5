// edthub console: a little help where scripts run; every page works without it.
"use strict";
(function () {
  // Pages waiting on something (a message still in progress) refresh themselves.
  var every = Number(document.body && document.body.dataset.refresh);
  if (every > 0) {
    setTimeout(function () {
      if (!document.querySelector("input:focus, select:focus")) location.reload();
    }, every * 1000);
  }
  // A form sent once is not sent twice by a second click.
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.dataset.sent) { e.preventDefault(); return; }
    form.dataset.sent = "1";
  });
  // Back to a page already sent from (the browser's cache): its forms may be sent again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form").forEach(function (f) { delete f.dataset.sent; });
  });
})();
