/* agency_table.h - the writer's copy of the configured agencies (config to policy terms). */
#ifndef IHALA_AGENCY_TABLE_H
#define IHALA_AGENCY_TABLE_H

#include "ledger.h"

struct broker_config;

/* A table of cfg's agencies, queue limit and deadlines, copied so that a reload never races
 * the writer reading it. NULL when out of memory; freed by its release member. */
struct writer_policy *agency_table_new(const struct broker_config *cfg);

#endif
