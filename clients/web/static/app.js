// app.js - live updates of the pages of `ihala web` (server-sent events).
// The server renders everything (escaped there); on the inbox this only fetches the table
// body again when the node says something changed; a referral's page and the audit page are
// loaded again, unless the clerk is filling in one of their forms. The new-referral form is
// never replaced. No inline script: the page's CSP allows only this.
"use strict";
(function () {
	var rows = document.getElementById("rows");
	var live = document.getElementById("live");
	var page = document.body.getAttribute("data-page");
	if (!live || !window.EventSource || !window.fetch || page === "new") {
		return;
	}
	if (!rows) {
		// a referral's page, the audit page: a form being filled in waits for its send
		var whole = function () {
			var i, el = document.querySelectorAll("main form input, main form textarea, main form select");
			for (i = 0; i < el.length; i++) {
				var e = el[i];
				if (e.type === "hidden" || e.type === "submit") {
					continue;
				}
				if (e.type === "checkbox" ? e.checked !== e.defaultChecked
				    : e.tagName === "SELECT" ? e.selectedIndex > 0 && !e.options[e.selectedIndex].defaultSelected
				    : e.value !== "") {
					return true;
				}
			}
			return false;
		};
		var seen = document.body.getAttribute("data-gen");
		var wait = null, sending = false;
		// a form being sent brings its own page (with what it came to): no reload races it
		document.addEventListener("submit", function () {
			sending = true;
		});
		var again = function () {
			if (sending) {
				return;
			}
			if (whole()) {
				document.body.setAttribute("data-deferred", "1");
				if (wait === null) {
					wait = setTimeout(function () {
						wait = null;
						again();
					}, 1000);
				}
				return;
			}
			// what the last action came to is said once by the server: kept for the reload
			var f = document.getElementById("flash");
			if (f && window.sessionStorage) {
				sessionStorage.setItem("ihala-flash", JSON.stringify([f.className, f.textContent]));
			}
			window.location.reload();
		};
		if (window.sessionStorage && sessionStorage.getItem("ihala-flash") !== null) {
			var kept = null;
			try {
				kept = JSON.parse(sessionStorage.getItem("ihala-flash"));
			} catch (e) {}
			sessionStorage.removeItem("ihala-flash");
			var main = document.querySelector("main");
			if (kept && main && !document.getElementById("flash")) {
				var p = document.createElement("p");
				p.id = "flash";
				p.className = kept[0] === "message ok" ? "message ok" : "message err";
				p.setAttribute("role", kept[0] === "message ok" ? "status" : "alert");
				p.textContent = kept[1]; // text, never markup
				main.insertBefore(p, main.firstChild);
			}
		}
		var src = new EventSource("/events");
		src.addEventListener("open", function () {
			live.className = "on";
		});
		src.addEventListener("error", function () {
			live.className = "off";
		});
		src.addEventListener("change", function (ev) {
			live.className = "on";
			if (ev.data !== seen) {
				seen = ev.data;
				again();
			}
		});
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
