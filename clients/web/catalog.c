/* catalog.c - the web pages' message catalogs (i18n/LANG.json, embedded), looked up by key. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "web.h"

const char *const web_langs[] = {"en", "ar", "ckb", NULL};

/* web_langs[i]'s catalog; read-only once loaded, so the server's threads share it */
static json_t *catalogs[3];

int
catalog_load(void)
{
	const struct web_asset *a;
	json_error_t jerr;
	char name[32];
	size_t i;

	for (i = 0; web_langs[i] != NULL; i++) {
		snprintf(name, sizeof(name), "i18n/%s.json", web_langs[i]);
		if ((a = web_asset_find(name)) == NULL) {
			fprintf(stderr, "ihala: web: the catalog '%s' was not built in\n", name);
			goto fail;
		}
		catalogs[i] =
		    json_loadb((const char *)a->data, a->len, JSON_REJECT_DUPLICATES, &jerr);
		if (catalogs[i] == NULL || !json_is_object(catalogs[i])) {
			fprintf(stderr, "ihala: web: clients/web/%s:%d: %s\n", name, jerr.line,
			        catalogs[i] == NULL ? jerr.text : "not a JSON object");
			goto fail;
		}
	}
	return 0;
fail:
	catalog_free();
	return -1;
}

void
catalog_free(void)
{
	size_t i;

	for (i = 0; i < sizeof(catalogs) / sizeof(catalogs[0]); i++) {
		json_decref(catalogs[i]);
		catalogs[i] = NULL;
	}
}

const char *
catalog_lang(const char *lang)
{
	size_t i;

	for (i = 0; lang != NULL && web_langs[i] != NULL; i++) {
		if (strcmp(lang, web_langs[i]) == 0) {
			return web_langs[i];
		}
	}
	return NULL;
}

static const char *
lookup(size_t i, const char *key)
{
	const char *s = json_string_value(json_object_get(catalogs[i], key));

	return s != NULL && s[0] != '\0' ? s : NULL;
}

const char *
catalog_text(const char *lang, const char *key)
{
	const char *s = NULL;
	size_t i;

	for (i = 0; web_langs[i] != NULL; i++) {
		if (lang != NULL && strcmp(lang, web_langs[i]) == 0) {
			s = lookup(i, key);
			break;
		}
	}
	if (s == NULL) {
		s = lookup(0, key);
	}
	return s != NULL ? s : key;
}

const char *
catalog_find(const char *lang, const char *key)
{
	const char *s = catalog_text(lang, key);

	return s != key ? s : NULL;
}

int
catalog_rtl(const char *lang)
{
	return lang != NULL && (strcmp(lang, "ar") == 0 || strcmp(lang, "ckb") == 0);
}
