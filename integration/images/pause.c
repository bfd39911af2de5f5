/* Minimal pod sandbox ("pause") process for podshim's end-to-end tests.
 * Sleeps in pause() until SIGTERM or SIGINT; when it runs as pid 1 it also reaps
 * orphaned children so that zombies never accumulate in a shared pid namespace.
 * Built at test time with `gcc -static -Os` by the integration harness. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) {
	(void)sig;
	_exit(0);
}

static void on_chld(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void) {
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if (getpid() == 1) {
		sa.sa_handler = on_chld;
		sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
		sigaction(SIGCHLD, &sa, NULL);
	}
	for (;;)
		pause();
	return 0;
}
