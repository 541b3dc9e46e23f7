/* error.h - the one error space of ihala, shared by broker, library and tools. */
#ifndef IHALA_ERROR_H
#define IHALA_ERROR_H

/*
 * Every function that can fail returns 0 on success or one of these negative
 * codes. The absolute value of each code equals the number of the matching
 * ErrorCode in proto/ihala.proto, so a code travels on the wire unchanged:
 * wire = -code, code = -wire. tests/unit/error_test.c checks the two lists
 * agree name by name.
 *
 * Ranges: 1-19 local failures (never sent by the broker), 20-39 session and
 * frame errors, 40-69 message refusals, 70-89 audit-log errors.
 */
enum ihala_err {
	IHALA_OK = 0,

	/* local */
	IHALA_EINTERNAL = -1,
	IHALA_ENOMEM = -2,
	IHALA_EIO = -3,
	IHALA_ETLS = -4,
	IHALA_EZMQ = -5,
	IHALA_ESTORE = -6,
	IHALA_ECONFIG = -7,
	IHALA_EINVAL = -8,
	IHALA_ETIMEDOUT = -9,
	IHALA_EUNREACHABLE = -10,
	IHALA_ECLOSED = -11,
	IHALA_EAGAIN = -12,
	IHALA_EKEYPERM = -13,
	IHALA_EJSON = -14,
	IHALA_ENOSPACE = -15,

	/* session and frames */
	IHALA_EBADFRAME = -20,
	IHALA_EFRAMESIZE = -21,
	IHALA_EUNKNOWNFRAME = -22,
	IHALA_ENOTAUTH = -23,
	IHALA_EUNKNOWNAGENCY = -24,
	IHALA_EFINGERPRINT = -25,
	IHALA_ECERT = -26,
	IHALA_EHANDSHAKE = -27,
	IHALA_ESESSIONS = -28,
	IHALA_EPROTOCOL = -29,
	IHALA_ERESET = -30,
	IHALA_ESHUTDOWN = -31,
	IHALA_EREVOKED = -32,
	IHALA_EVERSIONPROTO = -33,

	/* message refusals */
	IHALA_ESCHEMA = -40,
	IHALA_EUTF8 = -41,
	IHALA_EFROM = -42,
	IHALA_ERECIPIENT = -43,
	IHALA_EFORBIDDEN = -44,
	IHALA_ENOTPARTY = -45,
	IHALA_ETRANSITION = -46,
	IHALA_EOUTCOME = -47,
	IHALA_ECONSENT = -48,
	IHALA_ENOREFERRAL = -49,
	IHALA_EREFEXISTS = -50,
	IHALA_EMSGID = -51,
	IHALA_EQUEUEFULL = -52,
	IHALA_ESTOREFULL = -53,
	IHALA_EREADONLY = -54,
	IHALA_EPARENT = -55,
	IHALA_ETOOLARGE = -56,
	IHALA_EOVERLOAD = -57,
	IHALA_EQUOTA = -58,
	IHALA_EERASED = -59,
	IHALA_ESEALHASH = -60,
	IHALA_ESEALRECIP = -61,
	IHALA_ESEALAUTH = -62,
	IHALA_ESEALFORM = -63,
	IHALA_ESEALBIND = -64,
	IHALA_ESEALCONTENT = -65,

	/* audit log */
	IHALA_ENOTFOUND = -70,
	IHALA_EPROOF = -71,
	IHALA_ESIGNATURE = -72,
	IHALA_EINCONSISTENT = -73,
	IHALA_EVERSION = -74,
	IHALA_ETAMPER = -75,
};

/* The human sentence for a code; never NULL, static storage. */
const char *ihala_strerror(int err);

/* The stable machine name of a code ("QUEUE_FULL"); never NULL, static. */
const char *ihala_errname(int err);

/* 1 when the code names a known error (or 0 for success), else 0. */
int ihala_err_known(int err);

#endif
