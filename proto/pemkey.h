/* pemkey.h - reading PEM keys: the one passphrase rule (keys are stored unencrypted). */
#ifndef IHALA_PEMKEY_H
#define IHALA_PEMKEY_H

/*
 * The pem_password_cb to give PEM_read_PrivateKey and friends: never prompt on a terminal
 * for a passphrase; an encrypted key simply fails to load.
 */
int pem_no_passphrase(char *buf, int size, int rwflag, void *u);

#endif
