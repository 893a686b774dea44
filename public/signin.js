// Bookbot: when the server pauses sign-in (HTTP 429, "too many attempts, try again in N s"),
// Chainlit's login form would only say "Unable to sign in"; this shows the server's own words.
(function () {
  "use strict";
  var originalFetch = window.fetch;
  var timer = null;

  function show(text, seconds) {
    var box = document.getElementById("bookbot-signin-notice");
    if (!box) {
      box = document.createElement("div");
      box.id = "bookbot-signin-notice";
      box.setAttribute("role", "alert");
      box.style.cssText = "position:fixed;top:16px;left:50%;transform:translateX(-50%);z-index:9999;" +
        "padding:10px 16px;border-radius:8px;background:#7f1d1d;color:#fff;font:14px sans-serif;" +
        "box-shadow:0 2px 8px rgba(0,0,0,.3);max-width:90vw";
      document.body.appendChild(box);
    }
    box.textContent = "Sign-in paused: " + text + ".";
    clearTimeout(timer);
    timer = setTimeout(function () { box.remove(); }, Math.max(3, seconds || 10) * 1000);
  }

  window.fetch = function (input, init) {
    return originalFetch.apply(this, arguments).then(function (response) {
      try {
        var url = new URL(typeof input === "string" ? input : input.url, window.location.href);
        if (response.status === 429 && /\/login$/.test(url.pathname)) {
          var seconds = parseInt(response.headers.get("Retry-After") || "0", 10);
          response.clone().json().then(function (body) {
            show(String(body && body.detail || "too many attempts"), seconds);
          }).catch(function () {});
        }
      } catch (e) { /* never break the request itself */ }
      return response;
    });
  };
})();
