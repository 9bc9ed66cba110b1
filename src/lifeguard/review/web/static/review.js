// lifeguard review UI: keyboard shortcuts, help overlay, "blur all again", htmx error swaps.
// No inline scripts (the pages are served with a Content-Security-Policy of script-src 'self').
(function () {
  "use strict";

  function qs(sel, root) { return (root || document).querySelector(sel); }
  function qsa(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

  // Let 4xx answers (stale version 409, forbidden 403, bad input 422) be shown: the server
  // retargets them to #flash.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var s = evt.detail.xhr.status;
    if (s === 400 || s === 403 || s === 404 || s === 409 || s === 422) {
      evt.detail.shouldSwap = true;
      evt.detail.isError = false;
    } else if (s === 401) {
      window.location.href = "/review/login?next=" + encodeURIComponent(window.location.pathname);
    }
  });
  // A successful action clears an old error message.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var s = evt.detail.xhr ? evt.detail.xhr.status : 0;
    var flash = qs("#flash");
    if (flash && s >= 200 && s < 300) { flash.innerHTML = ""; }
  });

  // ---- help overlay
  function toggleHelp(show) {
    var h = qs("#help");
    if (!h) { return; }
    h.hidden = (show === undefined) ? !h.hidden : !show;
  }

  // ---- blur all again: every revealed slot goes back to its blurred template; videos stop.
  function blurAll() {
    qsa(".media-slot.revealed").forEach(function (slot) {
      var id = slot.getAttribute("data-item");
      qsa("video", slot).forEach(function (v) { v.pause(); v.removeAttribute("src"); v.load(); });
      var tpl = document.getElementById("blurred-" + id);
      if (tpl) {
        var node = tpl.content.firstElementChild.cloneNode(true);
        slot.replaceWith(node);
        if (window.htmx) { window.htmx.process(node); }
      } else {
        slot.remove();
      }
    });
  }

  function reblurOne(id) {
    var slot = document.getElementById("slot-" + id);
    if (!slot || !slot.classList.contains("revealed")) { return; }
    qsa("video", slot).forEach(function (v) { v.pause(); v.removeAttribute("src"); v.load(); });
    var tpl = document.getElementById("blurred-" + id);
    if (tpl) {
      var node = tpl.content.firstElementChild.cloneNode(true);
      slot.replaceWith(node);
      if (window.htmx) { window.htmx.process(node); }
    }
  }

  document.addEventListener("click", function (evt) {
    var t = evt.target;
    if (!(t instanceof Element)) { return; }
    if (t.closest("#blur-all")) { blurAll(); return; }
    if (t.closest("#help-button")) { toggleHelp(); return; }
    if (t.closest("#help-close")) { toggleHelp(false); return; }
    if (t.closest("#break-close")) { var b = qs("#break"); if (b) { b.innerHTML = ""; b.className = ""; } return; }
    var rb = t.closest("[data-reblur]");
    if (rb) { reblurOne(rb.getAttribute("data-reblur")); return; }
    var row = t.closest("tr.case-row");
    if (row && !t.closest("a")) { window.location.href = row.getAttribute("data-href"); }
  });

  // ---- selection (j/k) over queue rows or case items
  function selectable() {
    var rows = qsa("tr.case-row");
    return rows.length ? rows : qsa("li.item");
  }
  function current() {
    var items = selectable();
    for (var i = 0; i < items.length; i++) {
      if (items[i].classList.contains("selected")) { return i; }
    }
    return -1;
  }
  function move(delta) {
    var items = selectable();
    if (!items.length) { return; }
    var i = current();
    var next = i < 0 ? 0 : Math.max(0, Math.min(items.length - 1, i + delta));
    items.forEach(function (el) { el.classList.remove("selected"); el.removeAttribute("aria-selected"); });
    items[next].classList.add("selected");
    items[next].setAttribute("aria-selected", "true");
    items[next].scrollIntoView({ block: "nearest" });
  }
  function selectedItem() {
    var sel = qs("li.item.selected");
    if (sel) { return sel; }
    // Default: the first item whose media is still blurred.
    var slot = qs(".media-slot.blurred");
    return slot ? slot.closest("li.item") : null;
  }
  function clickKey(k) {
    var b = qs('button[data-key="' + k + '"]');
    if (b && !b.disabled) { b.click(); return true; }
    return false;
  }

  var pendingG = false;
  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey) { return; }
    var tag = (evt.target && evt.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (evt.target && evt.target.isContentEditable)) {
      if (evt.key === "Escape") { evt.target.blur(); }
      return;
    }
    var k = evt.key;
    if (pendingG) {
      pendingG = false;
      if (k === "q") { window.location.href = "/review/"; evt.preventDefault(); }
      return;
    }
    switch (k) {
      case "?": toggleHelp(); break;
      case "Escape": toggleHelp(false); break;
      case "j": move(1); break;
      case "k": move(-1); break;
      case "g": pendingG = true; break;
      case "Enter":
      case "o": {
        var row = qs("tr.case-row.selected");
        if (row) { window.location.href = row.getAttribute("data-href"); } else { return; }
        break;
      }
      case "b": blurAll(); break;
      case "r": {
        var item = selectedItem();
        var btn = item ? qs("button.reveal", item) : null;
        if (btn) { btn.click(); } else { return; }
        break;
      }
      case "a": case "c": case "f": case "e": case "n": case "u": case "x":
        if (!clickKey(k)) { return; }
        break;
      default:
        return;
    }
    evt.preventDefault();
  });
})();
