/* server.h - the broker daemon's event loop: sessions over ZeroMQ + TLS, dispatch, delivery. */
#ifndef IHALA_SERVER_H
#define IHALA_SERVER_H

struct broker_config;

/*
 * Run the broker on `cfg` until SIGTERM or SIGINT: opens the store, starts the writer
 * thread, binds the listener, serves. `cfg` is taken over (freed by the server, also when it
 * is replaced on SIGHUP). Returns 0 after a clean shutdown, or an error code at start-up.
 */
int server_run(struct broker_config *cfg);

#endif
