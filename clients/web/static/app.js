// app.js - live updates of the inbox page of `ihala web` (server-sent events).
// The server renders every row (escaped there); this only fetches the table body again
// when the node says something changed. No inline script: the page's CSP allows only this.
"use strict";
(function () {
	var rows = document.getElementById("rows");
	var live = document.getElementById("live");
	if (!rows || !window.EventSource || !window.fetch) {
		return;
	}
	var known = document.body.getAttribute("data-gen");
	var busy = false, again = false;

	// A decline form the clerk has started (a reason chosen, words typed) is not wiped by a
	// new table body: the reload waits until it is sent or emptied.
	var deferred = null;

	function dirty() {
		var f = rows.querySelectorAll("form.decline"), i;
		for (i = 0; i < f.length; i++) {
			if (f[i].elements.reason.value !== "" || f[i].elements.text.value !== "") {
				return true;
			}
		}
		return false;
	}

	function reload() {
		if (dirty()) {
			document.body.setAttribute("data-deferred", "1");
			if (deferred === null) {
				deferred = setTimeout(function () {
					deferred = null;
					reload();
				}, 1000);
			}
			return;
		}
		document.body.removeAttribute("data-deferred");
		if (busy) {
			again = true;
			return;
		}
		busy = true;
		fetch("/rows", {credentials: "same-origin", cache: "no-store"})
			.then(function (r) {
				if (!r.ok) {
					throw new Error("HTTP " + r.status);
				}
				return r.text();
			})
			.then(function (html) {
				rows.innerHTML = html;
				document.body.setAttribute("data-gen", known);
			})
			.catch(function () {})
			.then(function () {
				busy = false;
				if (again) {
					again = false;
					reload();
				}
			});
	}

	var es = new EventSource("/events");
	es.addEventListener("open", function () {
		live.className = "on";
	});
	es.addEventListener("error", function () {
		live.className = "off";
	});
	es.addEventListener("change", function (ev) {
		live.className = "on";
		if (ev.data !== known) {
			known = ev.data;
			reload();
		}
	});
})();
