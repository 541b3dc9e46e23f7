/* web_i18n_test.c - clients/web/i18n: every catalog has every key, and a text for every
 * status and priority the broker names. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ihala.pb-c.h"
#include "pbjson.h"

static const char *const langs[] = {"en", "ar", "ckb"};
#define NLANGS (sizeof(langs) / sizeof(langs[0]))

static json_t *cat[NLANGS];

static int
setup(void **state)
{
	const char *root = getenv("IHALA_ROOT");
	json_error_t err;
	char path[4096];
	size_t i;

	(void)state;
	for (i = 0; i < NLANGS; i++) {
		snprintf(path, sizeof(path), "%s/clients/web/i18n/%s.json", root ? root : ".",
		         langs[i]);
		cat[i] = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
		if (cat[i] == NULL) {
			fprintf(stderr, "# %s:%d: %s\n", path, err.line, err.text);
			return -1;
		}
	}
	return 0;
}

static int
teardown(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NLANGS; i++) {
		json_decref(cat[i]);
	}
	return 0;
}

/* every value a non-empty string; every key of each catalog in all the others */
static void
test_same_keys(void **state)
{
	const char *key;
	json_t *v;
	size_t i, j, missing = 0;

	(void)state;
	for (i = 0; i < NLANGS; i++) {
		assert_true(json_is_object(cat[i]));
		json_object_foreach(cat[i], key, v)
		{
			if (!json_is_string(v) || json_string_length(v) == 0) {
				fprintf(stderr, "# %s.json: '%s' is not a non-empty string\n",
				        langs[i], key);
				missing++;
			}
			for (j = 0; j < NLANGS; j++) {
				if (json_object_get(cat[j], key) == NULL) {
					fprintf(stderr, "# %s.json lacks '%s' (in %s.json)\n",
					        langs[j], key, langs[i]);
					missing++;
				}
			}
		}
	}
	assert_int_equal(missing, 0);
}

/* the pages show "status.<name>" and "priority.<name>" for what the broker says, and
 * "reason.<name>" for each reason code the decline form offers */
static void
enum_keys(const ProtobufCEnumDescriptor *ed, const char *prefix, int skip_last)
{
	char name[64], key[96];
	size_t i, j, missing = 0;

	for (i = 0; i < ed->n_values - (size_t)skip_last; i++) {
		if (ed->values[i].value == 0) {
			continue; /* UNSPECIFIED */
		}
		assert_int_equal(pbjson_enum_to_name(ed, ed->values[i].value, name, sizeof(name)),
		                 0);
		snprintf(key, sizeof(key), "%s.%s", prefix, name);
		for (j = 0; j < NLANGS; j++) {
			if (json_object_get(cat[j], key) == NULL) {
				fprintf(stderr, "# %s.json lacks '%s'\n", langs[j], key);
				missing++;
			}
		}
	}
	assert_int_equal(missing, 0);
}

static void
test_status_priority(void **state)
{
	(void)state;
	/* TASK_STATUS_OVERDUE is not a status (ihala.proto): the last value */
	enum_keys(&ihala__v2__task_status__descriptor, "status", 1);
	enum_keys(&ihala__v2__priority__descriptor, "priority", 0);
	enum_keys(&ihala__v2__reason_code__descriptor, "reason", 0);
}

/* the referral, new-referral and audit pages name every code their forms offer or their
 * entries carry: services, data categories, sex, displacement, who gave consent, log
 * entry kinds */
static void
test_form_codes(void **state)
{
	(void)state;
	enum_keys(&ihala__v2__service_code__descriptor, "service", 0);
	enum_keys(&ihala__v2__data_category__descriptor, "data", 0);
	enum_keys(&ihala__v2__sex__descriptor, "sex", 0);
	enum_keys(&ihala__v2__displacement__descriptor, "displacement", 0);
	enum_keys(&ihala__v2__consent_giver__descriptor, "giver", 0);
	enum_keys(&ihala__v2__entry_kind__descriptor, "kind", 0);
}

/* the page's own language switch names each language in itself */
static void
test_language_names(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < NLANGS; i++) {
		assert_non_null(json_string_value(json_object_get(cat[i], "language.name")));
	}
	assert_string_equal(json_string_value(json_object_get(cat[0], "language.name")), "English");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_same_keys),
	    cmocka_unit_test(test_status_priority),
	    cmocka_unit_test(test_form_codes),
	    cmocka_unit_test(test_language_names),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
