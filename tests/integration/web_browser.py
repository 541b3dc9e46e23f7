#!/usr/bin/python3
# web_browser.py - the browser half of tests/integration/web.sh: a real headless Chromium
# (Selenium + chromedriver) as MoH's clerk in `ihala web`. Prints "PASS what" / "FAIL what"
# per step (web.sh turns them into TAP) and "# ..." diagnostics; web.sh gives the scene in
# the environment. Every wait is an explicit WebDriverWait with a generous limit (a loaded
# 2-core machine), never a sleep. With WEB_SCREENSHOTS=DIR it saves the pictures in docs/
# there: the inbox and a referral's page, in English and in Arabic (1280x800 window).
import json
import os
import re
import subprocess
import sys
import time
import traceback
import urllib.parse

from selenium import webdriver
from selenium.common.exceptions import (ElementClickInterceptedException,
                                        NoAlertPresentException,
                                        StaleElementReferenceException, TimeoutException,
                                        WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

E = os.environ
T, URL, IHALA, DMA = E["WEB_T"], E["WEB_URL"], E["WEB_IHALA"], E["WEB_DMA_CONF"]
RID, OVD, NAME, DEC = E["WEB_RID"], E["WEB_OVD"], E["WEB_NAME"], E["WEB_DEC"]
NEW, AUD = E["WEB_NEW"], E["WEB_AUD_CONF"]
# what the clerk writes on a referral's page, with Arabic: it must reach DMA as typed
NOTE = "called the survivor - اتصلنا بالناجية"
BUSINESS = "appointment on 5 May - موعد في ٥ أيار"
# the name DMA's clerk types in the new-referral form: never in the auditor's clear parts
NEWNAME = "Hêmin Celal هێمن جەلال"
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


WEBS = []  # the other nodes' `ihala web` this script started (DMA's, the auditor's)


def start_web(conf, name):
    # another node's `ihala web`: its one-time link, on "localhost" (MoH's page is on
    # 127.0.0.1: a browser keeps the cookies of the two apart)
    out = open(T + "/" + name + ".out", "w+")
    err = open(T + "/" + name + ".err", "w")
    p = subprocess.Popen([IHALA, "--config", conf, "web"], stdout=out, stderr=err,
                         stdin=subprocess.DEVNULL)
    WEBS.append(p)
    for attempt in range(WAIT * 5):
        out.seek(0)
        line = out.readline().strip()
        if line.startswith("http://127.0.0.1:") and "/login?token=" in line:
            return line.replace("http://127.0.0.1:", "http://localhost:", 1)
        if p.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError("%s: no link; stderr: %s" % (name, open(T + "/" + name + ".err").read()))


def flash(d):
    f = d.find_elements(By.ID, "flash")
    return (f[0].text, f[0].get_attribute("class")) if f else ("", "")


def timeline(d):
    return [(li.get_attribute("data-what"), li.get_attribute("data-status"), li.text)
            for li in d.find_elements(By.CSS_SELECTOR, "#timeline li.event")]


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
            # the exception's name and first lines, not chromedriver's stack
            text = "".join(traceback.format_exception_only(type(e), e)).splitlines()
            ok, detail = False, "\n".join(l for l in text if not l.lstrip().startswith("#"))[:800]
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
    driver.set_window_size(1280, 800)
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

    def order_new():
        # new referrals first, then by priority: the emergency one (older) above the urgent
        ids = [r.get_attribute("data-referral")
               for r in d.find_elements(By.CSS_SELECTOR, "tr.referral")]
        if ids.index(OVD) < ids.index(RID):
            return True, ""
        return False, "order %r" % ids

    step("inbox order: new referrals by priority (the older emergency above the new urgent "
         "one)", order_new)

    def accept():
        for attempt in range(5):
            try:
                row(d, RID).find_element(By.CSS_SELECTOR, "button.accept").click()
                break
            except (StaleElementReferenceException, ElementClickInterceptedException):
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

    def order_answered():
        # an answered referral goes below those still waiting, however urgent or new
        ids = [r.get_attribute("data-referral")
               for r in d.find_elements(By.CSS_SELECTOR, "tr.referral")]
        if ids.index(DEC) < ids.index(RID):
            return True, ""
        return False, "order %r" % ids

    step("inbox order: the accepted referral below the normal one still waiting",
         order_answered)

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

    en = json.load(open(E["IHALA_ROOT"] + "/clients/web/i18n/en.json"))

    def referral_page():
        # by the keyboard: the referral's link, then Enter
        link = row(d, RID).find_element(By.CSS_SELECTOR, "td.rid a")
        link.send_keys(Keys.ENTER)
        ok, why = wait_until(d, "the referral's page",
                             lambda: d.find_elements(By.ID, "timeline"))
        if not ok:
            return ok, why + "\n" + d.page_source[:1500]
        s = d.find_element(By.ID, "summary")
        if s.get_attribute("data-referral") != RID or s.get_attribute("data-status") != "accepted":
            return False, "summary %r %r" % (s.get_attribute("data-referral"),
                                            s.get_attribute("data-status"))
        tl = timeline(d)
        whats = [(w, st) for w, st, _ in tl]
        if ("referral", "requested") not in whats or ("status", "accepted") not in whats:
            return False, "timeline %r" % tl
        name = d.find_element(By.CSS_SELECTOR, "#record dd[data-field=name]").text
        if name != NAME:
            return False, "the record's name %r, wanted %r" % (name, NAME)
        if d.find_elements(By.CSS_SELECTOR, "main script"):
            return False, "a script element in the page"
        return no_alert(d)

    step("the referral's page (opened by the keyboard): its timeline, the survivor's record "
         "opened locally, the name as text", referral_page, retry=False)

    def labelled():
        # every field of every form has its <label for>
        bad = []
        for el in d.find_elements(By.CSS_SELECTOR, "main form input:not([type=hidden]), "
                                  "main form select, main form textarea"):
            i = el.get_attribute("id")
            if not i or not d.find_elements(By.CSS_SELECTOR, "label[for='%s']" % i):
                bad.append(el.get_attribute("name"))
        forms = [f.get_attribute("action").rsplit("/", 1)[1]
                 for f in d.find_elements(By.CSS_SELECTOR, "main form")]
        want = ["progress", "outcome", "onward", "note"]
        if bad or any(w not in forms for w in want):
            return False, "unlabelled %r; forms %r" % (bad, forms)
        return True, ""

    step("the accepted referral's actions (progress, outcome, onward, note), every field "
         "labelled", labelled)

    def note():
        t = d.find_element(By.ID, "note-text")
        t.send_keys(NOTE)
        t.find_element(By.XPATH, "ancestor::form").find_element(
            By.CSS_SELECTOR, "button[type=submit]").click()
        ok, why = wait_until(d, "a note in the timeline",
                             lambda: any(w == "note" and NOTE in text
                                         for w, _, text in timeline(d)))
        if not ok:
            return ok, why + "\n%r %r" % (flash(d), timeline(d))
        text, cls = flash(d)
        if not text.startswith(en["noted"]) or "ok" not in cls:
            return False, "flash %r %r" % (text, cls)
        return True, ""

    step("a note posted on the referral's page shows in its timeline", note, retry=False)

    def progress():
        Select(d.find_element(By.ID, "progress-status")).select_by_value("in-progress")
        d.find_element(By.ID, "progress-business").send_keys(BUSINESS)
        d.find_element(By.ID, "progress-business").find_element(
            By.XPATH, "ancestor::form").find_element(
            By.CSS_SELECTOR, "button[type=submit]").click()
        ok, why = wait_until(d, "the referral in progress",
                             lambda: d.find_element(By.ID, "summary")
                             .get_attribute("data-status") == "in-progress")
        if not ok:
            return ok, why + "\n%r" % (flash(d),)
        text, cls = flash(d)
        if not text.startswith(en["progressed"]) or "ok" not in cls:
            return False, "flash %r %r" % (text, cls)
        if not any(w == "status" and st == "in-progress" and BUSINESS in text
                   for w, st, text in timeline(d)):
            return False, "timeline %r" % timeline(d)
        return True, ""

    step("progress (in progress, with its detail) from the referral's page: the status "
         "changes, the timeline says it", progress, retry=False)

    def dma_sees_note_progress():
        last = ""
        for attempt in range(max(1, WAIT // 2)):
            rc, out, err = ihala("inbox")
            if rc != 0:
                return False, "dma inbox: exit %d: %s" % (rc, err)
            rc, out, err = ihala("status", RID)
            if rc != 0:
                return False, "dma status: exit %d: %s" % (rc, err)
            st = json.loads(out.splitlines()[0])
            last = out
            notes = [h["envelope"]["note"].get("text") for h in st.get("history", [])
                     if "note" in h.get("envelope", {})]
            bs = [h["envelope"]["statusUpdate"].get("businessStatus")
                  for h in st.get("history", [])
                  if h.get("envelope", {}).get("statusUpdate", {}).get("status") ==
                  "in-progress"]
            if st.get("status") == "in-progress" and NOTE in notes and BUSINESS in bs:
                return True, ""
        return False, "not seen:\n" + last

    step("DMA's node receives the note and the progress as typed (ihala inbox, status)",
         dma_sees_note_progress)

    def shot_referral(name):
        # the referral's page as it is now (the timeline, the record, the actions), for docs/
        d.get(URL.split("/login")[0] + "/r/" + urllib.parse.quote(RID, safe=""))
        WebDriverWait(d, WAIT).until(lambda _: d.find_elements(By.ID, "timeline"))
        d.save_screenshot(shots + "/" + name)

    if shots:
        shot_referral("web-referral-en.png")

    d.get(URL.split("/login")[0] + "/")

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
        shot_referral("web-referral-ar.png")

    def kept():
        d.get(URL.split("/login")[0] + "/")
        h = d.find_element(By.TAG_NAME, "html")
        return (h.get_attribute("lang") == "ar" and h.get_attribute("dir") == "rtl",
                "lang %r" % h.get_attribute("lang"))

    step("the language is the browser's own: a new load is still Arabic", kept)
    step("Kurdish (ckb): dir=rtl", lang("ckb", "rtl", cat["ckb"]["title"]))
    step("back to English: dir=ltr", lang("en", "ltr", cat["en"]["title"]))

    def small_screen():
        # a small laptop (1024x640): the inbox and a referral's page, in Arabic and in
        # English, need no sideways scrolling; every control is inside the window; the text
        # is not shrunk below 14px to fit
        base = URL.split("/login")[0]
        bad = []
        d.set_window_size(1024, 640)
        try:
            for code, want_dir in (("ar", "rtl"), ("en", "ltr")):
                d.get(base + "/")
                ok, why = lang(code, want_dir, cat[code]["title"])()
                if not ok:
                    return ok, why
                for path, ready in (("/", "inbox"),
                                    ("/r/" + urllib.parse.quote(RID, safe=""), "timeline")):
                    d.get(base + path)
                    ok, why = wait_until(d, ready, lambda: d.find_elements(By.ID, ready))
                    if not ok:
                        return ok, why
                    sw, cw, fs, out = d.execute_script(
                        "var e = document.documentElement, w = e.clientWidth, o = [];"
                        "document.querySelectorAll('main button, main input:not([type=hidden]),"
                        " main select, main textarea, main a').forEach(function (x) {"
                        "  var r = x.getBoundingClientRect();"
                        "  if (r.width > 0 && (r.left < 0 || r.right > w + 1))"
                        "    o.push((x.name || x.id || x.textContent).trim().slice(0, 30) +"
                        "           ' [' + Math.round(r.left) + ',' + Math.round(r.right) + ']');"
                        "});"
                        "return [e.scrollWidth, w,"
                        " parseFloat(getComputedStyle(document.body).fontSize), o];")
                    where = "%s %s" % (code, path if path == "/" else "/r/")
                    if sw > cw + 1:
                        bad.append("%s: %dpx wide in a %dpx window" % (where, sw, cw))
                    if out:
                        bad.append("%s: outside the window: %s" % (where, ", ".join(out[:5])))
                    if fs < 14:
                        bad.append("%s: body text %.1fpx" % (where, fs))
                    if shots and path == "/":
                        d.save_screenshot(shots + "/web-inbox-%s-1024.png" % code)
        finally:
            d.set_window_size(1280, 800)
            d.get(base + "/")
        return not bad, "\n".join(bad)

    step("a small laptop screen (1024x640): inbox and referral page, Arabic and English, "
         "without sideways scrolling, every control in the window, text >= 14px", small_screen,
         retry=False)

    moh_tab = d.current_window_handle

    REASON = "below-knee amputation, needs a prosthesis"
    DISTRICT = "\"><i id=x>Sinjar</i>"  # kept as text, never markup

    def dma_refused():
        # the whole form filled in but for "consent given": the broker refuses it, and the
        # form comes back with what was typed (escaped), never in the address
        dma_url = start_web(DMA, "dma-web")
        d.execute_script("window.__same_page = 43;")
        d.switch_to.new_window("tab")
        d.get(dma_url)
        # the links of DMA's role show once the broker's Welcome came
        ok, why = wait_until(d, "the New referral link",
                             lambda: d.find_elements(By.ID, "nav-new") or d.refresh())
        if not ok:
            return ok, why
        d.find_element(By.ID, "nav-new").click()
        ok, why = wait_until(d, "the new-referral form", lambda: d.find_elements(By.ID, "new-to"))
        if not ok:
            return ok, why
        f = d.find_element(By.ID, "new-to").find_element(By.XPATH, "ancestor::form")
        d.find_element(By.ID, "new-rid").send_keys(NEW)
        d.find_element(By.ID, "new-to").send_keys("moh")
        Select(d.find_element(By.ID, "new-priority")).select_by_value("urgent")
        d.find_element(By.ID, "new-service-prosthetics-orthotics").click()
        d.find_element(By.ID, "new-reason").send_keys(REASON)
        d.find_element(By.ID, "new-case").send_keys("IQ-NIN-" + NEW)
        d.find_element(By.ID, "new-name").send_keys(NEWNAME)
        Select(d.find_element(By.ID, "new-sex")).select_by_value("male")
        d.find_element(By.ID, "new-birthyear").send_keys("1988")
        d.find_element(By.ID, "new-governorate").send_keys("Ninewa")
        d.find_element(By.ID, "new-district").send_keys(DISTRICT)
        Select(d.find_element(By.ID, "new-givenby")).select_by_value("survivor")
        d.execute_script("arguments[0].value = '2024-05-01';", d.find_element(By.ID, "new-date"))
        d.find_element(By.ID, "new-recordedby").send_keys("DMA-VA-0231")
        for c in ("identity", "demographics", "location", "needs"):
            d.find_element(By.ID, "new-data-" + c).click()
        f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        ok, why = wait_until(d, "the refusal, on the form", lambda: "err" in flash(d)[1] and
                             d.find_elements(By.ID, "new-name"))
        if not ok:
            return False, "%s; flash %r" % (why, flash(d))
        text, cls = flash(d)
        if not text.startswith(en["refused"]) and not text.startswith(en["failed"]):
            return False, "flash %r" % text
        v = lambda i: d.find_element(By.ID, i).get_attribute("value")
        got = {"name": v("new-name"), "reason": v("new-reason"), "rid": v("new-rid"),
               "to": v("new-to"), "district": v("new-district"), "date": v("new-date"), "year": v("new-birthyear"),
               "priority": Select(d.find_element(By.ID, "new-priority"))
               .first_selected_option.get_attribute("value"),
               "service": d.find_element(By.ID, "new-service-prosthetics-orthotics")
               .is_selected(),
               "data": all(d.find_element(By.ID, "new-data-" + c).is_selected()
                           for c in ("identity", "demographics", "location", "needs")),
               "given": d.find_element(By.ID, "new-given").is_selected()}
        want = {"name": NEWNAME, "reason": REASON, "rid": NEW, "to": "moh", "district": DISTRICT, "date": "2024-05-01",
                "year": "1988", "priority": "urgent", "service": True, "data": True,
                "given": False}
        if got != want:
            return False, "kept %r, wanted %r" % (got, want)
        if d.find_elements(By.CSS_SELECTOR, "main i"):
            return False, "the typed markup became an element"
        if "Hêmin" in d.current_url or "name=" in d.current_url:
            return False, "the survivor's data in the address: " + d.current_url
        if "Hêmin" in open(T + "/dma-web.err").read():
            return False, "the survivor's name in DMA's web log"
        print("# " + text, flush=True)
        return True, ""

    step("DMA's new-referral form refused by the broker (no consent given): the form comes "
         "back with what was typed, the refusal said", dma_refused, retry=False)

    def dma_new():
        # the form as it came back, consent now given: sent as it is
        d.find_element(By.ID, "new-given").click()
        f = d.find_element(By.ID, "new-to").find_element(By.XPATH, "ancestor::form")
        f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        # the page may be loaded again meanwhile (DMA's node hears of the referral): what
        # the send came to is still said
        ok, why = wait_until(d, "the new referral's page saying it was sent",
                             lambda: d.find_elements(By.ID, "summary") and
                             d.find_element(By.ID, "summary").get_attribute("data-referral")
                             == NEW and flash(d)[0].startswith(en["referred"]) and
                             "ok" in flash(d)[1])
        if not ok:
            return False, "%s; flash %r" % (why, flash(d))
        return True, ""

    step("DMA's clerk creates a referral with the consent record through the new-referral "
         "form (DMA's own ihala web)", dma_new, retry=False)

    def moh_live():
        d.switch_to.window(moh_tab)
        ok, why = wait_until(d, "row " + NEW, lambda: row(d, NEW) is not None)
        if not ok:
            return ok, why
        if d.execute_script("return window.__same_page;") != 43:
            return False, "the page was reloaded"
        if row(d, NEW).find_element(By.CSS_SELECTOR, "td.name").text != NEWNAME:
            return False, "name %r" % row(d, NEW).find_element(By.CSS_SELECTOR, "td.name").text
        return True, ""

    step("MoH's inbox shows DMA's new referral live, the survivor's name opened", moh_live)

    def refused():
        # DMA may not close a referral with an outcome: the broker says so, the page too
        d.switch_to.window(d.window_handles[-1])
        # the page is loaded again when DMA's node hears MoH's node took the referral: the
        # click waits for that, and is tried again if the page went away under it
        wait_until(d, "the referral received", lambda: d.find_element(By.ID, "summary")
                   .get_attribute("data-status") == "received")
        for attempt in range(5):
            try:
                f = d.find_element(By.CSS_SELECTOR, "main form.outcome")
                f.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                break
            except WebDriverException:
                time.sleep(0.5)
        ok, why = wait_until(d, "the refusal said", lambda: "err" in flash(d)[1])
        if not ok:
            return ok, why + "; flash %r" % (flash(d),)
        text, cls = flash(d)
        if not text.startswith(en["refused"]) or not re.search(r": [A-Z_]+: \S", text):
            return False, "flash %r %r" % (text, cls)
        st = d.find_element(By.ID, "summary").get_attribute("data-status")
        if st not in ("requested", "received"):
            return False, "status %r after a refusal" % st
        print("# " + text, flush=True)
        return True, ""

    step("an outcome from DMA (a role that may not) is refused: the broker's sentence shown "
         "as an error, nothing changed", refused, retry=False)

    def auditor():
        aud_url = start_web(AUD, "aud-web")
        d.get(aud_url)
        ok, why = wait_until(d, "the Audit link",
                             lambda: d.find_elements(By.ID, "nav-audit") or d.refresh())
        if not ok:
            return ok, why
        d.find_element(By.ID, "nav-audit").click()
        ok, why = wait_until(d, "the audit page", lambda: d.find_elements(By.ID, "log"))
        if not ok:
            return ok, why
        # verified once when the node started: the log's size is there before any click
        ok, why = wait_until(d, "the log's size at start",
                             lambda: d.find_elements(By.ID, "audit-size") or d.refresh())
        if not ok:
            return ok, why
        d.find_element(By.CSS_SELECTOR, "form.verify button").click()
        ok, why = wait_until(d, "the verify's result",
                             lambda: d.find_elements(By.ID, "audit-result") and
                             flash(d)[0].startswith(en["verified"]))
        if not ok:
            return ok, why + "\n%r" % (flash(d),)
        r = d.find_element(By.ID, "audit-result")
        size = int(d.find_element(By.ID, "audit-size").text)
        ck = int(d.find_element(By.ID, "audit-checkpoint").text.split()[0])
        text, cls = flash(d)
        if r.get_attribute("data-ok") != "1" or not text.startswith(en["verified"]):
            return False, "result %r; flash %r" % (r.text, text)
        if size < 20 or ck < 1 or ck > size:
            return False, "size %d, checkpoint %d" % (size, ck)
        entries = d.find_elements(By.CSS_SELECTOR, "#log tr.entry")
        src = d.page_source
        if not entries or NEW not in src:
            return False, "%d entries; %s not among them" % (len(entries), NEW)
        if NEWNAME in src or "Hêmin" in src or "DMA-VA" not in src:
            return False, "a sealed part shows (the name), or the consent record does not"
        print("# log size %d, checkpoint %d" % (size, ck), flush=True)
        return True, ""

    step("the auditor's page: log size, Verify passes against the broker's signed "
         "checkpoint, the entries' clear parts (never the survivor's name)", auditor,
         retry=False)

    d.switch_to.window(moh_tab)

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
    for p in WEBS:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
