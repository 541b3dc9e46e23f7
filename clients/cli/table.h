/* table.h - output for people on a terminal: aligned columns (by display width, right-to-left
 * text isolated in its cell) and local times. */
#ifndef IHALA_TABLE_H
#define IHALA_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Rows are kept until table_print; cells are copied. At most TABLE_COLS columns. */
#define TABLE_COLS 8

struct table;

/* A table with ncols columns and their headings (copied); NULL when out of memory. */
struct table *table_new(size_t ncols, const char *const *headings);
/* Add a row of ncols cells (NULL: empty). Returns 0 or -1 (out of memory). */
int table_add(struct table *t, const char *const *cells);
/* Write the headings and the rows, each column as wide as its widest cell, two spaces apart;
 * the last column unpadded. A cell holding right-to-left text is wrapped in U+2068 FIRST
 * STRONG ISOLATE ... U+2069 POP DIRECTIONAL ISOLATE, so it reads correctly in its cell and
 * does not reorder the columns around it. Returns 0 or -1 (write error). */
int table_print(const struct table *t, FILE *fp);
void table_free(struct table *t);
/* Rows added, the headings not counted. */
size_t table_rows(const struct table *t);

/* One row as table_print writes it, with fixed column widths (a wider cell pushes the rest
 * right): for rows printed one at a time (inbox --watch). Returns 0 or -1. */
int table_line(FILE *fp, size_t ncols, const size_t *widths, const char *const *cells);

/* The length of the longest prefix of s of at most max bytes that ends at a whole
 * character. */
size_t text_cut(const char *s, size_t max);

/* s wrapped in U+2068 ... U+2069 when it holds right-to-left text, else s as it is; in buf
 * (len bytes, cut at a whole character, the closing U+2069 always there). For right-to-left
 * words inside a left-to-right sentence. */
const char *text_isolate(const char *s, char *buf, size_t len);

/* Columns a UTF-8 string takes on a terminal (combining marks 0, wide characters 2). */
size_t text_width(const char *s);
/* 1 when s holds a right-to-left letter (Hebrew, Arabic, Syriac, Thaana, N'Ko, ...). */
int text_has_rtl(const char *s);

/* Epoch milliseconds as local time "YYYY-MM-DD HH:MM" (buf of at least 32 bytes); "" for 0. */
const char *table_time(uint64_t ms, char *buf, size_t len);

#endif
