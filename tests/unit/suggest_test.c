/* suggest_test.c - proto/suggest: the edit distance and the "did you mean" rule. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "suggest.h"

static void
test_distance(void **state)
{
	char longer[80];

	(void)state;
	assert_int_equal(suggest_distance("listen", "listen"), 0);
	assert_int_equal(suggest_distance("listn", "listen"), 1);   /* deletion */
	assert_int_equal(suggest_distance("listenn", "listen"), 1); /* insertion */
	assert_int_equal(suggest_distance("lasten", "listen"), 1);  /* substitution */
	assert_int_equal(suggest_distance("lsiten", "listen"), 1);  /* transposition */
	assert_int_equal(suggest_distance("LISTEN", "listen"), 0);  /* case */
	assert_int_equal(suggest_distance("", "abc"), 3);
	assert_int_equal(suggest_distance("abc", ""), 3);
	assert_int_equal(suggest_distance("kitten", "sitting"), 3);
	/* the same both ways */
	assert_int_equal(suggest_distance("referalId", "referralId"),
	                 suggest_distance("referralId", "referalId"));
	/* too long to compare: far */
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	assert_int_equal(suggest_distance(longer, "a"), SUGGEST_FAR);
	longer[64] = '\0';
	assert_int_equal(suggest_distance(longer, longer), 0);
}

static void
test_near(void **state)
{
	unsigned best = SUGGEST_FAR;

	(void)state;
	assert_true(suggest_near("listn", "listen", &best));
	assert_int_equal(best, 1);
	/* no closer than what was found */
	assert_false(suggest_near("listn", "listens", &best));
	best = SUGGEST_FAR;
	/* two edits for names of 4 characters and more, one for shorter ones */
	assert_true(suggest_near("lstn", "listen", &best));
	best = SUGGEST_FAR;
	assert_false(suggest_near("lsn", "listen", &best));
	assert_true(suggest_near("mo", "moh", &best));
	best = SUGGEST_FAR;
	assert_false(suggest_near("ab", "moh", &best));
	/* a name differing only in case is suggested; the name itself is not */
	assert_true(suggest_near("MOH", "moh", &best));
	assert_int_equal(best, 0);
	best = SUGGEST_FAR;
	assert_false(suggest_near("moh", "moh", &best));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_distance),
	    cmocka_unit_test(test_near),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
