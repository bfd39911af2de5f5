/* Stand-in for critest's nginx image in `make critest` (built like pause.c): what critest's PID
 * and IPC namespace specs look for in it, and nothing of nginx itself. It runs as
 * /usr/sbin/nginx (so `pidof nginx` finds it) with the command line "nginx: master process"
 * (what /proc/1/cmdline shows in a container's own PID namespace), writes its pid to
 * /var/run/nginx.pid, answers every connection on port 80 with an empty 200 and exits on
 * SIGTERM or SIGINT. */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_term(int sig) {
	(void)sig;
	_exit(0);
}

int main(int argc, char **argv) {
	static char *const master[] = {"nginx: master process", NULL};
	if (argc < 1 || strcmp(argv[0], master[0]) != 0) {
		execv("/usr/sbin/nginx", master);
		perror("exec /usr/sbin/nginx");
		return 1;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	FILE *f = fopen("/var/run/nginx.pid", "w");
	if (f == NULL || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
		perror("/var/run/nginx.pid");
		return 1;
	}
	int s = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	struct sockaddr_in a;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons(80);
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s, 16) != 0) {
		/* No network of its own to serve on: stay up for the namespace specs. */
		for (;;)
			pause();
	}
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	for (;;) {
		int c = accept(s, NULL, NULL);
		if (c < 0)
			continue;
		char buf[1024];
		(void)read(c, buf, sizeof(buf));
		(void)write(c, ok, sizeof(ok) - 1);
		close(c);
	}
}
