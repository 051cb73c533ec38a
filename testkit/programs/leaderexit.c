/* An app whose main thread calls pthread_exit: its leader is a zombie (State Z) while the
 * worker it started runs on. The worker waits for SIGHUP in sigwait (blocked in it since
 * creation); the main thread leaves SIGHUP unblocked and exits. Writes sigrecord's lines.
 *
 * usage: leaderexit --out FILE [--read PATH] */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *out, *rd;

static void *worker(void *arg) {
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    int fd = open(out, O_WRONLY | O_APPEND);
    char line[8192];
    int n = snprintf(line, sizeof line, "ready pid=%d\n", getpid());
    if (write(fd, line, n) != n) return NULL;
    for (;;) {
        int sig;
        if (sigwait(&set, &sig) != 0) continue;
        char buf[1024], esc[3200] = "-";
        if (rd) {
            int r = open(rd, O_RDONLY);
            ssize_t len = r < 0 ? -1 : read(r, buf, sizeof buf);
            if (r >= 0) close(r);
            if (len < 0) {
                strcpy(esc, "ERR:0");
            } else {
                char *p = esc;
                for (ssize_t i = 0; i < len; i++) {
                    unsigned char c = buf[i];
                    if (c > 0x20 && c < 0x7f && c != '%') *p++ = c;
                    else p += sprintf(p, "%%%02X", c);
                }
                *p = 0;
            }
        }
        n = snprintf(line, sizeof line, "sig pid=%d signo=%d t_ns=0 content=%s\n", getpid(), sig, esc);
        if (write(fd, line, n) != n) return NULL;
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--out")) out = argv[++i];
        else if (!strcmp(argv[i], "--read")) rd = argv[++i];
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    pthread_exit(NULL);
}
