/* The resource table of the OpenAMP images (rsc_table.c). */
#ifndef RSC_TABLE_H_
#define RSC_TABLE_H_

#include <stddef.h>

void *get_resource_table(int rsc_id, int *len);

#endif
