// A Go app as the reloader meets it; writes sigrecord's lines (testkit::recorder parses them).
//
// usage: goapp --out FILE [--read PATH] [--notify]
//
// Without --notify it never calls signal.Notify: the Go runtime still catches every signal
// (SigCgt), and a SIGHUP ends it (exit status 2, killed-by-SIGHUP semantics). With --notify
// it asks for SIGHUP and records each one with what --read returned.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func escape(b []byte) string {
	s := ""
	for _, c := range b {
		if c > 0x20 && c < 0x7f && c != '%' {
			s += string(rune(c))
		} else {
			s += fmt.Sprintf("%%%02X", c)
		}
	}
	return s
}

func main() {
	out, read, notify := "", "", false
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--out":
			i++
			out = args[i]
		case "--read":
			i++
			read = args[i]
		case "--notify":
			notify = true
		}
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o666)
	if err != nil {
		panic(err)
	}
	c := make(chan os.Signal, 1)
	if notify {
		signal.Notify(c, syscall.SIGHUP)
	}
	pid := os.Getpid()
	fmt.Fprintf(f, "ready pid=%d\n", pid)
	if !notify {
		// A receive that can never complete would be a deadlock the runtime ends.
		for {
			time.Sleep(time.Hour)
		}
	}
	for range c {
		content := "-"
		if read != "" {
			if b, err := os.ReadFile(read); err == nil {
				content = escape(b)
			} else {
				content = "ERR:0"
			}
		}
		fmt.Fprintf(f, "sig pid=%d signo=1 t_ns=0 content=%s\n", pid, content)
	}
}
