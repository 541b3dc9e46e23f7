/* pemkey.c - reading PEM keys (see pemkey.h). */
#include "pemkey.h"

int
pem_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}
