/* actions.c - `ihala web`'s POST actions: each form made into the envelope `ihala` would
 * send, given to the node loop as a job, and what it came to said on the next page. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "cli.h"
#include "error.h"
#include "frame.h"
#include "id.h"
#include "ihala.pb-c.h"
#include "pbjson.h"
#include "web.h"
#include "webhttp.h"

void
set_flash(struct web *w, int ok, const char *key, const char *lang, const char *detail)
{
	/* a long broker sentence is cut, never the page */
	if (snprintf(w->flash, sizeof(w->flash), "%s %s", catalog_text(lang, key), detail) < 0) {
		w->flash[0] = '\0';
	}
	w->flash_ok = ok;
}

/*
 * Ask the node loop for a job (it is the only thread with the client) and wait for it; then
 * say what it came to on the next page (flash: `okkey` and the referral id, or the broker's
 * refusal in words). `env` (the envelope as JSON, SUBMIT, not NULL) is taken. 0 when it was
 * done, else an error code (refused, unreachable, busy, timed out).
 */
static int
job_wait(struct web *w, struct MHD_Connection *c, enum web_job_kind kind, json_t *env,
         const char *rid, const char *okkey)
{
	const char *lang = request_lang(c);
	struct timespec until;
	int err;

	pthread_mutex_lock(&w->mu);
	if (w->job.state == WEB_JOB_DONE) {
		w->job.state = WEB_JOB_NONE; /* the answer of a page that stopped waiting */
	}
	if (w->job.state != WEB_JOB_NONE) {
		set_flash(w, 0, "busy", lang, "");
		pthread_mutex_unlock(&w->mu);
		json_decref(env);
		return IHALA_ETIMEDOUT;
	}
	w->job.state = WEB_JOB_PENDING;
	w->job.kind = kind;
	json_decref(w->job.envelope);
	w->job.envelope = env;
	snprintf(w->job.rid, sizeof(w->job.rid), "%s", rid != NULL ? rid : "");
	snprintf(w->job.clerk, sizeof(w->job.clerk), "%s", web_cur_clerk());
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += w->job_timeout_ms / 1000 + 1;
	if (kind == WEB_JOB_VERIFY) {
		until.tv_sec += 60; /* a replay of the whole log */
	}
	while (!w->stopping && w->job.state != WEB_JOB_DONE) {
		if (pthread_cond_timedwait(&w->job_cv, &w->mu, &until) == ETIMEDOUT) {
			break;
		}
	}
	err = IHALA_ETIMEDOUT;
	if (w->job.state == WEB_JOB_DONE) {
		err = w->job.err;
		w->job.state = WEB_JOB_NONE;
		if (err == 0) {
			set_flash(w, 1, okkey, lang, w->job.text);
		} else if (kind == WEB_JOB_VERIFY) {
			set_flash(w, 0, "verify.failed", lang, w->job.text);
		} else if (cli_is_transport(err)) {
			set_flash(w, 0, "unreachable", lang, w->job.text);
		} else if (cli_exit_code(err) == CLI_REFUSED) {
			set_flash(w, 0, "refused", lang, w->job.text);
		} else {
			set_flash(w, 0, "failed", lang, w->job.text);
		}
	} else {
		set_flash(w, 0, "busy", lang, "");
	}
	pthread_mutex_unlock(&w->mu);
	return err;
}

/* job_wait, then the browser to `back`. */
static enum MHD_Result
job_run(struct web *w, struct MHD_Connection *c, enum web_job_kind kind, json_t *env,
        const char *rid, const char *okkey, const char *back)
{
	if (kind == WEB_JOB_SUBMIT && env == NULL) {
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	(void)job_wait(w, c, kind, env, rid, okkey);
	return send_redirect(c, back, NULL);
}

/* ---- the actions' forms: each makes the envelope `ihala` would send ---- */

/* A free text field: "" when absent; -1 when too long or not UTF-8. */
static int
form_text(const char *body, const char *name, char *out, size_t len)
{
	out[0] = '\0';
	if (!form_has(body, name)) {
		return 0;
	}
	if (form_value(body, name, out, len) != 0 ||
	    !pb_utf8_valid((const uint8_t *)out, strlen(out))) {
		return -1;
	}
	return 0;
}

/* Set key to the text when it is not empty. */
static void
set_text(json_t *o, const char *key, const char *text)
{
	if (text[0] != '\0') {
		json_object_set_new(o, key, json_string(text));
	}
}

/* The enum values named by every `name` field (JSON names, checked against ed), as an array;
 * NULL when one is not a value of ed. */
static json_t *
form_enums(const char *body, const char *name, const ProtobufCEnumDescriptor *ed)
{
	json_t *a = json_array();
	char v[64];
	size_t i;
	int x;

	for (i = 0; a != NULL && form_nth(body, name, i, v, sizeof(v)) == 0; i++) {
		if (pbjson_enum_from_name(ed, v, &x) != 0 || x == 0) {
			json_decref(a);
			return NULL;
		}
		json_array_append_new(a, json_string(v));
	}
	return a;
}

/* One enum value of field `name`: 1 with its name in out, 0 when absent or empty, -1 when
 * it is not a value of ed. */
static int
form_enum(const char *body, const char *name, const ProtobufCEnumDescriptor *ed, char *out,
          size_t len)
{
	int x;

	if (form_value(body, name, out, len) != 0 || out[0] == '\0') {
		return 0;
	}
	return pbjson_enum_from_name(ed, out, &x) == 0 && x != 0 ? 1 : -1;
}

/* Where an action's page goes back to: the referral's page when it was sent from there. */
static void
form_back(const char *body, const char *rid, char *back, size_t len)
{
	char page[16];

	if (form_value(body, "page", page, sizeof(page)) == 0 && strcmp(page, "referral") == 0) {
		referral_path(rid, back, len);
	} else {
		snprintf(back, len, "/");
	}
}

enum MHD_Result
bad_request(struct MHD_Connection *c, const char *why)
{
	char text[256];

	snprintf(text, sizeof(text), "bad request: %s", why);
	return send_text(c, MHD_HTTP_BAD_REQUEST, text);
}

/* {"statusUpdate": {"referralId": rid, "status": status}} with its object in *su. */
static json_t *
status_update(const char *rid, const char *status, json_t **su)
{
	json_t *env = json_object();

	*su = json_object();
	if (env == NULL || *su == NULL) {
		json_decref(env);
		json_decref(*su);
		return NULL;
	}
	json_object_set_new(*su, "referralId", json_string(rid));
	json_object_set_new(*su, "status", json_string(status));
	json_object_set_new(env, "statusUpdate", *su);
	return env;
}

/* POST /accept: `ihala accept RID [--note TEXT]`. */
enum MHD_Result
do_accept(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char note[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env, *su;

	if (form_text(body, "note", note, sizeof(note)) != 0) {
		return bad_request(c, "the note is too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, "accepted", &su)) != NULL) {
		set_text(su, "note", note);
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "accepted", back);
}

/* POST /decline: `ihala decline RID --reason CODE [--text TEXT]`. */
enum MHD_Result
do_decline(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char code[64], text[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env, *su;

	if (form_enum(body, "reason", &ihala__v2__reason_code__descriptor, code, sizeof(code)) !=
	    1) {
		return bad_request(c, "no valid reason code");
	}
	if (form_text(body, "text", text, sizeof(text)) != 0) {
		return bad_request(c, "the reason in words is too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, "declined", &su)) != NULL) {
		json_object_set_new(su, "reasonCode", json_string(code));
		set_text(su, "reason", text);
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "declined", back);
}

/* POST /progress: `ihala progress RID [--status in-progress|on-hold] [--business-status
 * TEXT] [--note TEXT] [--reason CODE] [--text TEXT]`. */
enum MHD_Result
do_progress(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char st[32], code[64], bs[WEB_REASON_TEXT_MAX], note[WEB_REASON_TEXT_MAX],
	    text[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env, *su;
	int r;

	if (form_value(body, "status", st, sizeof(st)) != 0 ||
	    (strcmp(st, "in-progress") != 0 && strcmp(st, "on-hold") != 0)) {
		return bad_request(c, "the status must be in-progress or on-hold");
	}
	if ((r = form_enum(body, "reason", &ihala__v2__reason_code__descriptor, code,
	                   sizeof(code))) < 0) {
		return bad_request(c, "no valid reason code");
	}
	if (form_text(body, "businessStatus", bs, sizeof(bs)) != 0 ||
	    form_text(body, "note", note, sizeof(note)) != 0 ||
	    form_text(body, "text", text, sizeof(text)) != 0) {
		return bad_request(c, "a text is too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, st, &su)) != NULL) {
		set_text(su, "businessStatus", bs);
		set_text(su, "note", note);
		set_text(su, "reason", text);
		if (r == 1) {
			json_object_set_new(su, "reasonCode", json_string(code));
		}
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "progressed", back);
}

/* POST /outcome: `ihala outcome RID --file OUTCOME.json [--status completed|failed]
 * [--note TEXT]`, the Outcome from the form's fields. */
enum MHD_Result
do_outcome(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char st[32], code[64], date[16], notes[WEB_REASON_TEXT_MAX], note[WEB_REASON_TEXT_MAX],
	    back[3 * ID_MAX + 8];
	json_t *env, *su, *oc, *svc;
	int r;

	if (form_value(body, "status", st, sizeof(st)) != 0 ||
	    (strcmp(st, "completed") != 0 && strcmp(st, "failed") != 0)) {
		return bad_request(c, "the status must be completed or failed");
	}
	if ((r = form_enum(body, "reason", &ihala__v2__reason_code__descriptor, code,
	                   sizeof(code))) < 0) {
		return bad_request(c, "no valid reason code");
	}
	if (form_text(body, "date", date, sizeof(date)) != 0 ||
	    form_text(body, "notes", notes, sizeof(notes)) != 0 ||
	    form_text(body, "note", note, sizeof(note)) != 0) {
		return bad_request(c, "a text is too long or not UTF-8");
	}
	if ((svc = form_enums(body, "service", &ihala__v2__service_code__descriptor)) == NULL) {
		return bad_request(c, "not a service code");
	}
	form_back(body, rid, back, sizeof(back));
	if ((env = status_update(rid, st, &su)) != NULL && (oc = json_object()) != NULL) {
		json_object_set_new(oc, "serviceImplemented",
		                    json_boolean(form_has(body, "implemented")));
		json_object_set_new(oc, "success", json_boolean(form_has(body, "success")));
		json_object_set_new(oc, "followUpNeeded", json_boolean(form_has(body, "followUp")));
		json_object_set(oc, "servicesDelivered", svc);
		set_text(oc, "date", date);
		set_text(oc, "notes", notes);
		if (r == 1) {
			json_object_set_new(oc, "notSuccessfulReasons", json_pack("[s]", code));
		}
		json_object_set_new(su, "outcome", oc);
		set_text(su, "note", note);
	}
	json_decref(svc);
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "outcome.sent", back);
}

/* POST /note: `ihala note RID --text TEXT`. */
enum MHD_Result
do_note(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char text[WEB_REASON_TEXT_MAX], back[3 * ID_MAX + 8];
	json_t *env;

	if (form_text(body, "text", text, sizeof(text)) != 0 || text[0] == '\0') {
		return bad_request(c, "the note is empty, too long or not UTF-8");
	}
	form_back(body, rid, back, sizeof(back));
	env = json_pack("{s:{s:s,s:s}}", "note", "referralId", rid, "text", text);
	return job_run(w, c, WEB_JOB_SUBMIT, env, rid, "noted", back);
}

/* A fresh referral id: "R-" and 16 hex digits. */
static void
new_referral_id(char *buf, size_t len)
{
	char tok[WEB_TOKEN_LEN + 1];

	if (web_token(tok, sizeof(tok)) != 0) {
		snprintf(tok, sizeof(tok), "%llx", (unsigned long long)time(NULL));
	}
	snprintf(buf, len, "R-%.16s", tok);
}

/* Which data categories each survivor field is (proto/consent.c's table, by JSON name): an
 * onward referral carries only those its consent covers. */
static const struct {
	const char *field, *category;
} survivor_fields[] = {
    {"name", "identity"},
    {"sex", "demographics"},
    {"birthYear", "demographics"},
    {"governorate", "location"},
    {"district", "location"},
    {"displacement", "displacement"},
    {"washingtonGroup", "functioning"},
    {"injury", "injury"},
    {"contact", "contact"},
};

static int
has_string(json_t *a, const char *v)
{
	json_t *it;
	size_t i;

	json_array_foreach(a, i, it)
	{
		if (json_is_string(it) && strcmp(json_string_value(it), v) == 0) {
			return 1;
		}
	}
	return 0;
}

/*
 * POST /onward: an onward referral (`ihala refer` of a referral whose parentReferralId is
 * RID) to agency `to`, with the services and data categories chosen: the survivor's fields
 * of those categories copied from the referral this node holds, the consent narrowed to
 * them and to `to` (the broker checks it lies within the parent's).
 */
enum MHD_Result
do_onward(struct web *w, struct MHD_Connection *c, const char *body, const char *rid)
{
	char to[ID_MAX + 1], prio[32], reason[WEB_REASON_TEXT_MAX], nrid[ID_MAX + 1],
	    back[3 * ID_MAX + 8];
	json_t *svc, *cats, *row = NULL, *it, *parent, *psurv, *pcons, *env = NULL, *ref, *surv,
	                    *cons;
	size_t i;

	if (form_value(body, "to", to, sizeof(to)) != 0 || !id_agency_valid(to, strlen(to))) {
		return bad_request(c, "no valid agency to refer to");
	}
	if (form_enum(body, "priority", &ihala__v2__priority__descriptor, prio, sizeof(prio)) !=
	    1) {
		return bad_request(c, "no valid priority");
	}
	if (form_text(body, "reason", reason, sizeof(reason)) != 0) {
		return bad_request(c, "the reason is too long or not UTF-8");
	}
	if ((svc = form_enums(body, "service", &ihala__v2__service_code__descriptor)) == NULL) {
		return bad_request(c, "not a service code");
	}
	if ((cats = form_enums(body, "data", &ihala__v2__data_category__descriptor)) == NULL) {
		json_decref(svc);
		return bad_request(c, "not a data category");
	}
	new_referral_id(nrid, sizeof(nrid));
	referral_path(rid, back, sizeof(back));
	pthread_mutex_lock(&w->mu);
	json_array_foreach(w->rows, i, it)
	{
		if (strcmp(json_string_value(json_object_get(it, "referralId")), rid) == 0) {
			row = it;
			break;
		}
	}
	parent = json_object_get(row, "referral");
	psurv = json_object_get(parent, "survivor");
	pcons = json_object_get(parent, "consent");
	if (json_is_object(psurv) && (surv = json_object()) != NULL) {
		json_object_set(surv, "caseId", json_object_get(psurv, "caseId"));
		for (i = 0; i < sizeof(survivor_fields) / sizeof(survivor_fields[0]); i++) {
			json_t *v = json_object_get(psurv, survivor_fields[i].field);

			if (v != NULL && has_string(cats, survivor_fields[i].category)) {
				json_object_set(surv, survivor_fields[i].field, v);
			}
		}
		cons =
		    json_pack("{s:b,s:[s],s:O}", "given", 1, "agencies", to, "dataCovered", cats);
		if (cons != NULL) {
			json_object_set(cons, "givenBy", json_object_get(pcons, "givenBy"));
			json_object_set(cons, "date", json_object_get(pcons, "date"));
			json_object_set(cons, "recordedBy", json_object_get(pcons, "recordedBy"));
		}
		ref = json_pack("{s:s,s:s,s:s,s:s,s:O,s:o,s:o}", "referralId", nrid,
		                "parentReferralId", rid, "receivingAgency", to, "priority", prio,
		                "services", svc, "survivor", surv, "consent", cons);
		/* needs data: without "needs" among the categories the node refuses it, in words */
		if (ref != NULL && reason[0] != '\0') {
			json_object_set_new(ref, "reason", json_string(reason));
		}
		env = json_pack("{s:s,s:o}", "to", to, "referral", ref);
	}
	pthread_mutex_unlock(&w->mu);
	json_decref(svc);
	json_decref(cats);
	if (env == NULL) {
		set_flash(w, 0, "onward.norecord", request_lang(c), rid);
		return send_redirect(c, back, NULL);
	}
	return job_run(w, c, WEB_JOB_SUBMIT, env, nrid, "referred", back);
}

/* A field of the new-referral form that the node cannot take: the form again, with what was
 * typed in it and what is wrong in the clerk's language (`key`, `detail`), not a bare 400. */
static enum MHD_Result
refer_invalid(struct web *w, struct MHD_Connection *c, const char *body, const char *key,
              const char *detail)
{
	pthread_mutex_lock(&w->mu);
	set_flash(w, 0, key, request_lang(c), detail);
	pthread_mutex_unlock(&w->mu);
	return send_new(w, c, body);
}

/* POST /refer (DMA's new-referral form): `ihala refer --to AGENCY --file REFERRAL.json`. */
enum MHD_Result
do_refer(struct web *w, struct MHD_Connection *c, const char *body, const char *unused)
{
	char rid[ID_MAX + 1], to[ID_MAX + 1], prio[32], v[64], reason[WEB_REASON_TEXT_MAX],
	    text[256], agencies[1024], back[3 * ID_MAX + 8];
	static const char *const surv_text[] = {"caseId", "name", "governorate", "district"};
	json_t *svc, *cats, *ag, *surv, *cons, *ref, *env;
	char *tok, *save = NULL;
	uint64_t year;
	size_t i;

	(void)unused;
	if (form_value(body, "rid", rid, sizeof(rid)) != 0 || rid[0] == '\0') {
		new_referral_id(rid, sizeof(rid));
	} else if (!id_valid(rid)) {
		return refer_invalid(w, c, body, "new.bad.rid", "");
	}
	if (form_value(body, "to", to, sizeof(to)) != 0 || !id_agency_valid(to, strlen(to))) {
		return refer_invalid(w, c, body, "new.bad.to", "");
	}
	if (form_enum(body, "priority", &ihala__v2__priority__descriptor, prio, sizeof(prio)) !=
	    1) {
		return refer_invalid(w, c, body, "new.bad.priority", "");
	}
	if (form_text(body, "reason", reason, sizeof(reason)) != 0 ||
	    form_text(body, "agencies", agencies, sizeof(agencies)) != 0) {
		return refer_invalid(w, c, body, "new.bad.text", "");
	}
	if ((surv = json_object()) == NULL || (ag = json_array()) == NULL) {
		json_decref(surv);
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	for (i = 0; i < sizeof(surv_text) / sizeof(surv_text[0]); i++) {
		if (form_text(body, surv_text[i], text, sizeof(text)) != 0) {
			json_decref(surv);
			json_decref(ag);
			return refer_invalid(w, c, body, "new.bad.text", "");
		}
		set_text(surv, surv_text[i], text);
	}
	if (form_enum(body, "sex", &ihala__v2__sex__descriptor, v, sizeof(v)) == 1) {
		json_object_set_new(surv, "sex", json_string(v));
	}
	if (form_enum(body, "displacement", &ihala__v2__displacement__descriptor, v, sizeof(v)) ==
	    1) {
		json_object_set_new(surv, "displacement", json_string(v));
	}
	if (form_value(body, "birthYear", v, sizeof(v)) == 0 && v[0] != '\0') {
		if (cli_parse_u64(v, &year) != 0 || year < 1900 || year > 2100) {
			json_decref(surv);
			json_decref(ag);
			return refer_invalid(w, c, body, "new.bad.year", "");
		}
		json_object_set_new(surv, "birthYear", json_integer((json_int_t)year));
	}
	/* the agencies the consent covers: the recipient, and those written (comma or space
	 * separated) */
	json_array_append_new(ag, json_string(to));
	for (tok = strtok_r(agencies, ", ", &save); tok != NULL;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (!id_agency_valid(tok, strlen(tok))) {
			json_decref(surv);
			json_decref(ag);
			return refer_invalid(w, c, body, "new.bad.agencies", tok);
		}
		if (!has_string(ag, tok)) {
			json_array_append_new(ag, json_string(tok));
		}
	}
	svc = form_enums(body, "service", &ihala__v2__service_code__descriptor);
	cats = form_enums(body, "data", &ihala__v2__data_category__descriptor);
	if (svc == NULL || cats == NULL) {
		json_decref(svc);
		json_decref(cats);
		json_decref(surv);
		json_decref(ag);
		return refer_invalid(w, c, body, "new.bad.codes", "");
	}
	cons = json_pack("{s:b,s:o,s:o}", "given", form_has(body, "given"), "agencies", ag,
	                 "dataCovered", cats);
	if (cons != NULL) {
		if (form_enum(body, "givenBy", &ihala__v2__consent_giver__descriptor, v,
		              sizeof(v)) == 1) {
			json_object_set_new(cons, "givenBy", json_string(v));
		}
		if (form_text(body, "date", text, sizeof(text)) == 0) {
			set_text(cons, "date", text);
		}
		if (form_text(body, "recordedBy", text, sizeof(text)) == 0) {
			set_text(cons, "recordedBy", text);
		}
	}
	ref = json_pack("{s:s,s:s,s:s,s:o,s:o,s:o}", "referralId", rid, "receivingAgency", to,
	                "priority", prio, "services", svc, "survivor", surv, "consent", cons);
	if (ref != NULL) {
		set_text(ref, "reason", reason);
	}
	env = json_pack("{s:s,s:o}", "to", to, "referral", ref);
	if (env == NULL) {
		return send_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	}
	if (job_wait(w, c, WEB_JOB_SUBMIT, env, rid, "referred") != 0) {
		/* not done: the form again, with what was typed in it and the broker's sentence
		 * (there is no referral to show) */
		return send_new(w, c, body);
	}
	referral_path(rid, back, sizeof(back));
	return send_redirect(c, back, NULL);
}

/* POST /verify: the auditor's `ihala audit verify`. */
enum MHD_Result
do_verify(struct web *w, struct MHD_Connection *c, const char *body, const char *unused)
{
	(void)body;
	(void)unused;
	return job_run(w, c, WEB_JOB_VERIFY, NULL, "", "verified", "/audit");
}
