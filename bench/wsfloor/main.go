// Command wsfloor measures the floor of a fan-out on this machine: the cost
// of one small write system call per socket. It opens -conns loopback TCP
// connections and, -rounds times, writes -bytes bytes to each of them in
// turn, as a server delivering one event to every subscriber would, timing
// each sweep. Nothing reads meanwhile (the bytes wait in the receivers'
// buffers, -rounds × -bytes per socket), so the time is the writes' alone.
// Run it pinned like the server: taskset -c 0 go run ./bench/wsfloor.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"time"
)

func main() {
	conns := flag.Int("conns", 1000, "sockets")
	size := flag.Int("bytes", 300, "bytes per write (a framed run event is ~250-350)")
	rounds := flag.Int("rounds", 30, "sweeps over every socket")
	flag.Parse()
	if err := run(*conns, *size, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "wsfloor:", err)
		os.Exit(1)
	}
}

func run(n, size, rounds int) error {
	if rounds*size > 64<<10 {
		return fmt.Errorf("-rounds × -bytes must stay within 64 KiB, what a receive buffer holds without a reader")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	servers := make([]net.Conn, 0, n)
	clients := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range append(servers, clients...) {
			c.Close()
		}
	}()
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		clients = append(clients, c)
		s, err := ln.Accept()
		if err != nil {
			return err
		}
		servers = append(servers, s)
	}
	msg := make([]byte, size)
	sweeps := make([]time.Duration, 0, rounds)
	for range rounds {
		start := time.Now()
		for _, s := range servers {
			if _, err := s.Write(msg); err != nil {
				return err
			}
		}
		sweeps = append(sweeps, time.Since(start))
	}
	slices.Sort(sweeps)
	med := sweeps[len(sweeps)/2]
	fmt.Printf("one %d-byte write to each of %d sockets, %d sweeps: median %.2f ms per sweep (min %.2f, max %.2f), %.2f µs per write\n",
		size, n, rounds, ms(med), ms(sweeps[0]), ms(sweeps[len(sweeps)-1]), float64(med.Nanoseconds())/float64(n)/1000)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
