#!/usr/bin/python3
# web_tls_browser.py - the browser half of tests/integration/web_tls.sh: a real headless
# Chromium as MoH's clerk at `ihala web`'s HTTPS login form. The test CA is not in any
# store Chromium reads; it trusts the server's own key only (--ignore-certificate-errors-
# spki-list with its SPKI hash), not every certificate. Prints "PASS what" / "FAIL what" per
# step and "# ..." diagnostics; web_tls.sh gives the scene in the environment.
import json
import os
import sys
import traceback

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

E = os.environ
T, BASE, NAME, PW, RID = E["WEB_T"], E["WEB_BASE"], E["WEB_USER"], E["WEB_PW"], E["WEB_RID"]
WAIT = int(E.get("WEB_WAIT", "60"))
en = json.load(open(E["IHALA_ROOT"] + "/clients/web/i18n/en.json"))


def report(ok, what, detail=""):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok and detail:
        for line in str(detail).splitlines()[-15:]:
            print("# " + line, flush=True)


def wait_until(d, what, fn, limit=WAIT):
    try:
        WebDriverWait(d, limit, poll_frequency=0.2,
                      ignored_exceptions=[StaleElementReferenceException]).until(lambda _: fn())
        return True, ""
    except TimeoutException:
        return False, "timed out after %ds waiting for %s at %s" % (limit, what, d.current_url)


def step(what, fn):
    try:
        ok, detail = fn()
    except Exception as e:
        text = "".join(traceback.format_exception_only(type(e), e)).splitlines()
        ok, detail = False, "\n".join(l for l in text if not l.lstrip().startswith("#"))[:800]
    report(ok, what, detail)
    return ok


def flash(d):
    f = d.find_elements(By.ID, "flash")
    return (f[0].text, f[0].get_attribute("class")) if f else ("", "")


opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--no-first-run", "--disable-extensions", "--disable-background-networking",
          "--disable-sync", "--lang=en-US", "--user-data-dir=" + T + "/chrome-profile",
          "--ignore-certificate-errors-spki-list=" + E["WEB_SPKI"]):
    opts.add_argument(a)
service = Service("/usr/bin/chromedriver", log_path=T + "/chromedriver.log")
driver = None
try:
    driver = webdriver.Chrome(service=service, options=opts)
    with open(T + "/chromedriver.pid", "w") as f:
        f.write(str(service.process.pid))
    driver.set_page_load_timeout(WAIT)
    driver.set_window_size(1280, 800)
    d = driver

    def sign_in(pw):
        d.get(BASE + "/login")
        ok, why = wait_until(d, "the login form",
                             lambda: d.find_elements(By.CSS_SELECTOR, "input[name=password]"))
        if not ok:
            return ok, why + "\n" + d.page_source[:1500]
        d.find_element(By.NAME, "name").send_keys(NAME)
        d.find_element(By.NAME, "password").send_keys(pw)
        d.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        return True, ""

    def wrong():
        ok, why = sign_in(PW + "!")
        if not ok:
            return ok, why
        ok, why = wait_until(d, "the refusal", lambda: flash(d)[0] == en["login.failed"])
        if not ok:
            return ok, why + "; flash %r" % (flash(d),)
        if d.get_cookie("ihala_session") is not None or d.find_elements(By.ID, "inbox"):
            return False, "a session after a wrong password"
        return True, ""

    if not step("over HTTPS (the server's key trusted), a wrong password is refused, said in "
                "words, no session", wrong):
        sys.exit(1)

    def right():
        ok, why = sign_in(PW)
        if not ok:
            return ok, why
        ok, why = wait_until(d, "the inbox", lambda: d.find_elements(By.ID, "inbox"))
        if not ok:
            return ok, why + "\n" + d.page_source[:1500]
        c = d.get_cookie("ihala_session")
        if c is None or not (c.get("secure") and c.get("httpOnly") and
                             c.get("sameSite") == "Strict"):
            return False, "cookie %r" % c
        if not d.current_url.startswith("https://") or d.current_url.rstrip("/") != BASE:
            return False, "at %s" % d.current_url
        with open(T + "/browser-session.txt", "w") as f:
            f.write(c["value"])
        return True, ""

    if not step("the right password opens the inbox over HTTPS: a Secure HttpOnly "
                "SameSite=Strict cookie", right):
        sys.exit(1)

    def row():
        for r in d.find_elements(By.CSS_SELECTOR, "tr.referral"):
            if r.get_attribute("data-referral") == RID:
                return r
        return None

    def accept():
        ok, why = wait_until(d, "row " + RID, lambda: row() is not None)
        if not ok:
            return ok, why
        for attempt in range(5):
            try:
                row().find_element(By.CSS_SELECTOR, "button.accept").click()
                break
            except StaleElementReferenceException:
                continue
        ok, why = wait_until(d, "row accepted", lambda: row() is not None and
                             row().get_attribute("data-status") == "accepted")
        if not ok:
            return ok, why + "; flash %r" % (flash(d),)
        text, cls = flash(d)
        if not text.startswith(en["accepted"]) or "ok" not in cls:
            return False, "flash %r %r" % (text, cls)
        return True, ""

    step("the clerk accepts the referral in the browser: the row turns accepted", accept)

    def logout_style():
        # the stylesheet's, not the browser's default button: outlined, at the header's end
        b = d.find_element(By.ID, "logout")
        css = {k: b.value_of_css_property(k) for k in
               ("border-top-style", "border-top-color", "background-color", "color")}
        want = {"border-top-style": "solid", "border-top-color": "rgba(138, 20, 20, 1)",
                "background-color": "rgba(255, 255, 255, 1)", "color": "rgba(138, 20, 20, 1)"}
        if css != want:
            return False, "%r, wanted %r" % (css, want)
        h = d.find_element(By.TAG_NAME, "header").rect
        r = b.rect
        if abs((h["x"] + h["width"]) - (r["x"] + r["width"])) > 2:
            return False, "not at the header's end: header %r, button %r" % (h, r)
        return True, ""

    step("the Sign out button has the page's style (outlined, at the header's end)",
         logout_style)

    def sign_out():
        old = d.get_cookie("ihala_session")["value"]
        d.find_element(By.ID, "logout").click()
        ok, why = wait_until(d, "the login form",
                             lambda: d.current_url == BASE + "/login" and
                             d.find_elements(By.CSS_SELECTOR, "input[name=password]"))
        if not ok:
            return ok, why
        if d.get_cookie("ihala_session") is not None:
            return False, "the cookie is still there"
        # the old cookie put back by hand opens nothing: the session ended on the server
        d.add_cookie({"name": "ihala_session", "value": old, "path": "/", "secure": True,
                      "httpOnly": True, "sameSite": "Strict"})
        d.get(BASE + "/")
        ok, why = wait_until(d, "the login form again",
                             lambda: d.find_elements(By.CSS_SELECTOR, "input[name=password]"))
        if not ok or d.find_elements(By.ID, "inbox"):
            return False, "the old cookie still opens %s" % d.current_url
        return True, ""

    step("Sign out: back to the login form, the cookie dropped, the old cookie opens nothing",
         sign_out)
finally:
    if driver is not None:
        driver.quit()
