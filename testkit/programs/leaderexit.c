/* An app whose main thread calls pthread_exit: its leader is a zombie (State Z) while the
 * worker it started runs on. The worker waits for SIGHUP in sigwait (blocked in it since
 * creation); the main thread leaves SIGHUP unblocked and exits. Writes sigrecord's lines.
 *
 * glibc's pthread_exit blocks every signal in the exiting thread; --raw-exit ends the main
 * thread with the bare exit(2) system call instead, leaving its mask as it was (SIGHUP
 * unblocked), as a runtime without glibc's exit path does.
 *
 * usage: leaderexit --out FILE [--read PATH] [--raw-exit] */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
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
    int raw = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--raw-exit")) raw = 1;
        else if (i + 1 < argc && !strcmp(argv[i], "--out")) out = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--read")) rd = argv[++i];
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    if (raw) syscall(SYS_exit, 0);
    pthread_exit(NULL);
}
