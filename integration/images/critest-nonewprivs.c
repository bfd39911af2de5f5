/* Stand-in for critest's nonewprivs image in `make critest` (built like pause.c), installed
 * set-user-id root: prints the effective uid it runs with, which is 0 unless no_new_privs
 * kept the set-user-id bit from taking effect. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
