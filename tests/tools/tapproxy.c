/* tapproxy.c - loopback TCP relay for tests: relays both ways, appends every byte to a capture. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>

/*
 * Usage: tapproxy LISTEN_PORT TARGET_PORT CAPTURE_FILE
 *
 * Listens on 127.0.0.1:LISTEN_PORT; each accepted connection is relayed to
 * 127.0.0.1:TARGET_PORT. Every byte that passes, in either direction, is
 * appended to CAPTURE_FILE (written as it passes, so a test can inspect the
 * file while the proxy runs). Prints "listening" on stdout once ready. Runs
 * until killed. A connection that ends on one side is closed on the other.
 */

#define MAX_PAIRS 64
#define BUF_SIZE 65536

struct pair {
	int a; /* accepted client side, -1 when free */
	int b; /* broker side */
};

static int
parse_port(const char *s)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535) {
		return -1;
	}
	return (int)v;
}

static int
tcp_to(int port)
{
	struct sockaddr_in sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
tcp_listen(int port)
{
	struct sockaddr_in sa;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 16) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int
write_all(int fd, const unsigned char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w <= 0) {
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void
pair_end(struct pair *p)
{
	close(p->a);
	close(p->b);
	p->a = p->b = -1;
}

/* Move what is readable on `from` to `to` and to the capture; -1 when the pair ends. */
static int
relay(int from, int to, FILE *cap)
{
	static unsigned char buf[BUF_SIZE];
	ssize_t n = read(from, buf, sizeof(buf));

	if (n < 0 && errno == EINTR) {
		return 0;
	}
	if (n <= 0) {
		return -1;
	}
	if (fwrite(buf, 1, (size_t)n, cap) != (size_t)n || fflush(cap) != 0) {
		fprintf(stderr, "tapproxy: cannot write the capture: %s\n", strerror(errno));
		exit(1);
	}
	return write_all(to, buf, (size_t)n);
}

int
main(int argc, char **argv)
{
	struct pair pairs[MAX_PAIRS];
	struct pollfd pfd[1 + 2 * MAX_PAIRS];
	int lport, tport, lfd, i, n;
	FILE *cap;

	if (argc != 4 || (lport = parse_port(argv[1])) < 0 || (tport = parse_port(argv[2])) < 0) {
		fprintf(stderr, "usage: tapproxy LISTEN_PORT TARGET_PORT CAPTURE_FILE\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	cap = fopen(argv[3], "ab");
	if (cap == NULL) {
		fprintf(stderr, "tapproxy: cannot open '%s': %s\n", argv[3], strerror(errno));
		return 1;
	}
	lfd = tcp_listen(lport);
	if (lfd < 0) {
		fprintf(stderr, "tapproxy: cannot listen on 127.0.0.1:%d: %s\n", lport,
		        strerror(errno));
		return 1;
	}
	for (i = 0; i < MAX_PAIRS; i++) {
		pairs[i].a = pairs[i].b = -1;
	}
	printf("listening\n");
	fflush(stdout);
	for (;;) {
		pfd[0].fd = lfd;
		pfd[0].events = POLLIN;
		for (i = 0; i < MAX_PAIRS; i++) {
			pfd[1 + 2 * i].fd = pairs[i].a;
			pfd[1 + 2 * i].events = POLLIN;
			pfd[2 + 2 * i].fd = pairs[i].b;
			pfd[2 + 2 * i].events = POLLIN;
		}
		n = poll(pfd, 1 + 2 * MAX_PAIRS, -1);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			fprintf(stderr, "tapproxy: poll: %s\n", strerror(errno));
			return 1;
		}
		if (pfd[0].revents & POLLIN) {
			int a = accept(lfd, NULL, NULL), b;

			if (a >= 0) {
				b = tcp_to(tport);
				for (i = 0; i < MAX_PAIRS && pairs[i].a >= 0; i++) {
				}
				if (b < 0 || i == MAX_PAIRS) {
					close(a);
					if (b >= 0) {
						close(b);
					}
				} else {
					pairs[i].a = a;
					pairs[i].b = b;
				}
			}
		}
		for (i = 0; i < MAX_PAIRS; i++) {
			if (pairs[i].a < 0) {
				continue;
			}
			if ((pfd[1 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    relay(pairs[i].a, pairs[i].b, cap) != 0) {
				pair_end(&pairs[i]);
				continue;
			}
			if ((pfd[2 + 2 * i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    relay(pairs[i].b, pairs[i].a, cap) != 0) {
				pair_end(&pairs[i]);
			}
		}
	}
}
