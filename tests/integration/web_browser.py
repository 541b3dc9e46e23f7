#!/usr/bin/python3
# web_browser.py - the browser half of tests/integration/web.sh: a real headless Chromium
# (Selenium + chromedriver) as MoH's clerk in `ihala web`. Prints "PASS what" / "FAIL what"
# per step (web.sh turns them into TAP) and "# ..." diagnostics; web.sh gives the scene in
# the environment. Every wait is an explicit WebDriverWait with a generous limit (a loaded
# 2-core machine), never a sleep.
import json
import os
import subprocess
import sys
import traceback

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException,
                                        StaleElementReferenceException, TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

E = os.environ
T, URL, IHALA, DMA = E["WEB_T"], E["WEB_URL"], E["WEB_IHALA"], E["WEB_DMA_CONF"]
RID, OVD, NAME, DEC = E["WEB_RID"], E["WEB_OVD"], E["WEB_NAME"], E["WEB_DEC"]
# the reason in words a decline gives, with Arabic: it must reach DMA as typed
WHY = "waiting list full until June - قائمة الانتظار ممتلئة"
WAIT = int(E.get("WEB_WAIT", "60"))


def report(ok, what, detail=""):
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if not ok and detail:
        for line in str(detail).splitlines()[-15:]:
            print("# " + line, flush=True)


def ihala(*args):
    p = subprocess.run([IHALA, "--config", DMA] + list(args), capture_output=True, text=True,
                       timeout=120)
    return p.returncode, p.stdout, p.stderr


def row(d, rid):
    rows = d.find_elements(By.CSS_SELECTOR, "tr.referral")
    for r in rows:
        if r.get_attribute("data-referral") == rid:
            return r
    return None


def wait_until(d, what, fn, limit=WAIT):
    try:
        WebDriverWait(d, limit, poll_frequency=0.2,
                      ignored_exceptions=[StaleElementReferenceException]).until(lambda _: fn())
        return True, ""
    except TimeoutException:
        return False, "timed out after %ds waiting for %s" % (limit, what)


def no_alert(d):
    try:
        a = d.switch_to.alert
        text = a.text
        a.dismiss()
        return False, "an alert opened: %r" % text
    except NoAlertPresentException:
        return True, ""


def step(what, fn, retry=True):
    # The table body is replaced when the node says something changed: an element found
    # before that is stale; a step that only looks then looks again (a few times). A step
    # that acts (refer, accept) is not run twice.
    for attempt in range(5 if retry else 1):
        try:
            ok, detail = fn()
            break
        except StaleElementReferenceException:
            ok, detail = False, "elements kept going stale"
        except Exception as e:
            ok, detail = False, "".join(traceback.format_exception_only(type(e), e))
            break
    report(ok, what, detail)
    return ok


opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--no-first-run", "--disable-extensions", "--disable-background-networking",
          "--disable-sync", "--lang=en-US", "--user-data-dir=" + T + "/chrome-profile"):
    opts.add_argument(a)
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
service = Service("/usr/bin/chromedriver", log_path=T + "/chromedriver.log")
driver = None
try:
    driver = webdriver.Chrome(service=service, options=opts)
    with open(T + "/chromedriver.pid", "w") as f:
        f.write(str(service.process.pid))
    driver.set_page_load_timeout(WAIT)
    driver.set_window_size(1280, 720)
    d = driver
    shots = E.get("WEB_SCREENSHOTS")  # a directory: screenshots for docs/ (not in the suite)

    def login():
        d.get(URL)
        ok, why = wait_until(d, "the inbox table", lambda: d.find_elements(By.ID, "inbox"))
        if not ok:
            return ok, why + "\n" + d.page_source[:2000]
        c = d.get_cookie("ihala_session")
        if c is None:
            return False, "no session cookie"
        with open(T + "/session.txt", "w") as f:
            f.write(c["value"])
        with open(T + "/csrf.txt", "w") as f:
            f.write(d.find_element(By.CSS_SELECTOR, "input[name=csrf]").get_attribute("value"))
        if not (c.get("httpOnly") and c.get("sameSite") == "Strict"):
            return False, "cookie %r" % c
        if d.current_url.rstrip("/") != URL.split("/login")[0]:
            return False, "not redirected to the inbox: " + d.current_url
        return True, ""

    if not step("the one-time link opens the inbox: redirected, session cookie HttpOnly "
                "SameSite=Strict", login):
        sys.exit(1)

    step("the referral delivered before the page was opened is listed",
         lambda: wait_until(d, "row " + OVD, lambda: row(d, OVD) is not None))

    def live():
        ok, why = wait_until(d, "server-sent events connected",
                             lambda: d.find_element(By.ID, "live").get_attribute("class") == "on")
        if not ok:
            return ok, why
        d.execute_script("window.__same_page = 42;")
        rc, out, err = ihala("refer", "--to", "moh", "--file", T + "/ref.json")
        if rc != 0:
            return False, "dma refer: exit %d: %s" % (rc, err)
        ok, why = wait_until(d, "row " + RID, lambda: row(d, RID) is not None)
        if not ok:
            return ok, why
        if d.execute_script("return window.__same_page;") != 42:
            return False, "the page was reloaded"
        return True, ""

    step("a new referral appears live, without reloading the page (server-sent events)", live,
         retry=False)

    def escaped():
        r = row(d, RID)
        cell = r.find_element(By.CSS_SELECTOR, "td.name")
        text = cell.text
        if text != NAME:
            return False, "name cell shows %r, wanted %r" % (text, NAME)
        if d.find_elements(By.CSS_SELECTOR, "#rows script, td.name script"):
            return False, "a script element is in the table"
        ok, why = no_alert(d)
        if not ok:
            return ok, why
        if "<script>alert(1)</script>" not in d.find_element(By.ID, "rows").text:
            return False, "the literal text is not in the page"
        return True, ""

    step("the survivor's name with <script> and Arabic is shown as text (no element, "
         "no alert)", escaped)

    def newest_first():
        ids = [r.get_attribute("data-referral")
               for r in d.find_elements(By.CSS_SELECTOR, "tr.referral")]
        if ids.index(RID) < ids.index(OVD):
            return True, ""
        return False, "order %r" % ids

    step("newest first: the new referral is above the older one", newest_first)

    def accept():
        for attempt in range(5):
            try:
                row(d, RID).find_element(By.CSS_SELECTOR, "button.accept").click()
                break
            except StaleElementReferenceException:
                continue  # not clicked: the table was replaced under it
        ok, why = wait_until(d, "row accepted",
                             lambda: row(d, RID) is not None and
                             row(d, RID).get_attribute("data-status") == "accepted")
        if not ok:
            return ok, why
        flash = d.find_elements(By.ID, "flash")
        if not flash or RID not in flash[0].text or "ok" not in flash[0].get_attribute("class"):
            return False, "no confirmation: %r" % [f.text for f in flash]
        if row(d, RID).find_elements(By.CSS_SELECTOR, "button.accept"):
            return False, "the accepted referral still has an Accept button"
        return True, ""

    step("accept: the row turns accepted, the page says so, no button left", accept,
         retry=False)

    def dma_sees():
        rc, out, err = ihala("status", RID)
        if rc != 0:
            return False, "dma status: exit %d: %s" % (rc, err)
        st = json.loads(out.splitlines()[0])
        if st.get("status") != "accepted":
            return False, "status %r" % st.get("status")
        return True, ""

    step("DMA's node sees the referral accepted (ihala status)", dma_sees)

    def decline():
        en = json.load(open(E["IHALA_ROOT"] + "/clients/web/i18n/en.json"))
        ok, why = wait_until(d, "a decline form on " + DEC,
                             lambda: row(d, DEC) is not None and
                             row(d, DEC).find_elements(By.CSS_SELECTOR, "form.decline"))
        if not ok:
            return ok, why
        for attempt in range(5):
            try:
                f = row(d, DEC).find_element(By.CSS_SELECTOR, "form.decline")
                labels = [lb.text for lb in f.find_elements(By.TAG_NAME, "label")]
                if not (labels and labels[0].startswith(en["decline.reason"]) and
                        labels[1].startswith(en["decline.text"])):
                    return False, "labels %r" % labels
                sel = Select(f.find_element(By.NAME, "reason"))
                sel.select_by_value("no-capacity")
                if sel.first_selected_option.text != en["reason.no-capacity"]:
                    return False, "option text %r" % sel.first_selected_option.text
                t = f.find_element(By.NAME, "text")
                t.clear()
                t.send_keys(WHY)
                f.find_element(By.CSS_SELECTOR, "button.decline").click()
                break
            except StaleElementReferenceException:
                continue  # not sent: the table was replaced under it; fill it in again
        ok, why = wait_until(d, "row declined",
                             lambda: row(d, DEC) is not None and
                             row(d, DEC).get_attribute("data-status") == "declined")
        if not ok:
            return ok, why
        flash = d.find_elements(By.ID, "flash")
        if (not flash or DEC not in flash[0].text or
                not flash[0].text.startswith(en["declined"]) or
                "ok" not in flash[0].get_attribute("class")):
            return False, "no confirmation: %r" % [f.text for f in flash]
        if row(d, DEC).find_elements(By.CSS_SELECTOR, "form"):
            return False, "the declined referral still has a form"
        return True, ""

    step("decline with a reason code and the reason in words (labelled): the row turns "
         "declined, the page says so, no form left", decline, retry=False)

    def dma_sees_declined():
        # DMA's node takes its deliveries (the decline, with its reason) into its journal;
        # `ihala status` then shows what was said
        last = ""
        for attempt in range(max(1, WAIT // 2)):
            rc, out, err = ihala("inbox")
            if rc != 0:
                return False, "dma inbox: exit %d: %s" % (rc, err)
            rc, out, err = ihala("status", DEC)
            if rc != 0:
                return False, "dma status: exit %d: %s" % (rc, err)
            st = json.loads(out.splitlines()[0])
            last = out
            if st.get("status") != "declined":
                continue
            for h in st.get("history", []):
                su = h.get("envelope", {}).get("statusUpdate", {})
                if su.get("status") == "declined":
                    if su.get("reasonCode") == "no-capacity" and su.get("reason") == WHY:
                        return True, ""
                    return False, "the decline says %r" % su
        return False, "not seen declined with its reason:\n" + last

    step("DMA's node sees it declined with reason no-capacity and the words (ihala status)",
         dma_sees_declined)

    def draft_kept():
        # the clerk starts declining OVD; a new referral arrives meanwhile: what was typed
        # stays (the table waits), and the new row shows once the form is emptied
        DRF = E["WEB_DRF"]
        f = row(d, OVD).find_element(By.CSS_SELECTOR, "form.decline")
        Select(f.find_element(By.NAME, "reason")).select_by_value("other")
        f.find_element(By.NAME, "text").send_keys("draft")
        rc, out, err = ihala("refer", "--to", "moh", "--file", T + "/drf.json")
        if rc != 0:
            return False, "dma refer: exit %d: %s" % (rc, err)
        ok, why = wait_until(d, "the reload deferred (or done)",
                             lambda: d.find_element(By.TAG_NAME, "body")
                             .get_attribute("data-deferred") == "1" or
                             row(d, DRF) is not None)
        if not ok:
            return ok, why
        f = row(d, OVD).find_element(By.CSS_SELECTOR, "form.decline")
        sel = Select(f.find_element(By.NAME, "reason"))
        t = f.find_element(By.NAME, "text")
        if sel.first_selected_option.get_attribute("value") != "other" or \
                t.get_attribute("value") != "draft":
            return False, "the draft was wiped"
        if row(d, DRF) is not None:
            return False, "the table was replaced under the draft"
        sel.select_by_value("")
        t.clear()
        return wait_until(d, "row " + DRF, lambda: row(d, DRF) is not None)

    step("a decline the clerk started is not wiped by a live update; the update shows once "
         "the form is emptied", draft_kept, retry=False)

    def lang(code, want_dir, title):
        def f():
            d.find_element(By.ID, "lang-" + code).click()
            ok, why = wait_until(
                d, "html lang=" + code,
                lambda: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == code)
            if not ok:
                return ok, why
            h = d.find_element(By.TAG_NAME, "html")
            if h.get_attribute("dir") != want_dir:
                return False, "dir=%r" % h.get_attribute("dir")
            if d.find_element(By.TAG_NAME, "h1").text != title:
                return False, "title %r" % d.find_element(By.TAG_NAME, "h1").text
            if row(d, RID) is None:
                return False, "the referral is not listed"
            return True, ""
        return f

    cat = {c: json.load(open(E["IHALA_ROOT"] + "/clients/web/i18n/%s.json" % c))
           for c in ("en", "ar", "ckb")}
    if shots:
        d.save_screenshot(shots + "/web-inbox-en.png")
    step("Arabic: html lang=ar dir=rtl, the Arabic catalog's title",
         lang("ar", "rtl", cat["ar"]["title"]))
    if shots:
        d.save_screenshot(shots + "/web-inbox-ar.png")

    def kept():
        d.get(URL.split("/login")[0] + "/")
        h = d.find_element(By.TAG_NAME, "html")
        return (h.get_attribute("lang") == "ar" and h.get_attribute("dir") == "rtl",
                "lang %r" % h.get_attribute("lang"))

    step("the language is the browser's own: a new load is still Arabic", kept)
    step("Kurdish (ckb): dir=rtl", lang("ckb", "rtl", cat["ckb"]["title"]))
    step("back to English: dir=ltr", lang("en", "ltr", cat["en"]["title"]))

    def overdue():
        ok, why = wait_until(d, "overdue mark on " + OVD,
                             lambda: row(d, OVD) is not None and
                             "overdue" in row(d, OVD).get_attribute("class") and
                             row(d, OVD).find_elements(By.CSS_SELECTOR, ".badge.overdue"),
                             limit=int(E.get("WEB_OVERDUE_WAIT", "180")))
        return ok, why

    step("the unanswered emergency referral is marked overdue past its deadline, live",
         overdue)

    def console():
        bad = [m["message"] for m in d.get_log("browser")
               if "Content Security Policy" in m["message"] or m["level"] == "SEVERE"]
        return not bad, "\n".join(bad)

    step("no CSP violation nor error in the browser's console", console)
finally:
    if driver is not None:
        driver.quit()
