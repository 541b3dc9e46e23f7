/* jsonpos.h - where a field of a JSON file is (line, column), and taking a bad field out, so
 * that the ihala tool can report every problem of an input file at once, each where it is. */
#ifndef IHALA_JSONPOS_H
#define IHALA_JSONPOS_H

#include <stddef.h>

#include <jansson.h>

/*
 * A path names a value as pbjson's error messages do, without the root: keys joined by '.',
 * array items as "[N]" ("survivor.caseId", "services[2]", "" for the whole text). Keys match
 * as written in the file, or with '_' and case ignored (case_id matches caseId).
 */

/*
 * Find `path` in the JSON text (len bytes, read only). Sets *line and *col (from 1; the
 * column counts characters, not bytes) to where the key of the last element starts (the item
 * itself for "[N]", the first value for ""). When the path is not all there, they point at
 * the value of the deepest part that is (the object a missing field belongs in). Returns 1
 * when the whole path was found, 0 when only a part was, -1 when the text is not JSON the
 * scanner can follow (then *line = *col = 1).
 */
int jsonpos_find(const char *text, size_t len, const char *path, int *line, int *col);

/*
 * Remove the value at `path` from root (modified): an object member, or the array holding
 * an item "[N]" (its later items would change index). Returns 0, or -1 when nothing there
 * can be removed (the root itself, a missing key).
 */
int jsonpos_remove(json_t *root, const char *path);

#endif
