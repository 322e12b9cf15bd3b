// Command baseline is what numberd's throughput is measured against, on the same
// machine in the same run: a minimal chi server answering the allocation route
// with a constant JSON body (what answering an HTTP request costs at all), or with
// one Redis INCR per request (the home-made allocator numberd replaces).
//
//	baseline --addr 127.0.0.1:8090                                  constant JSON
//	baseline --addr 127.0.0.1:8090 --redis 127.0.0.1:6379           one INCR per request
//	baseline --pprof 127.0.0.1:6060                                 and its profile on the default mux
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/redis/go-redis/v9"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	redisAddr := flag.String("redis", "", "Redis host:port; set: one INCR per request")
	pprofAddr := flag.String("pprof", "", "host:port to serve /debug/pprof on, for comparing profiles with numberd's")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { slog.Error("pprof", "err", http.ListenAndServe(*pprofAddr, nil)) }()
	}
	if err := run(*addr, *redisAddr); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run(addr, redisAddr string) error {
	r := chi.NewRouter()
	mode := "constant"
	if redisAddr == "" {
		body := []byte(`{"pool":"p","numbers":["24442000000000000001"]}` + "\n")
		r.Post("/v1/pools/{pool}/numbers", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		})
	} else {
		mode = "incr"
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 128})
		defer rdb.Close()
		r.Post("/v1/pools/{pool}/numbers", func(w http.ResponseWriter, req *http.Request) {
			pool := chi.URLParam(req, "pool")
			n, err := rdb.Incr(req.Context(), "baseline:{"+pool+"}:counter").Result()
			if err != nil {
				http.Error(w, `{"code":"unavailable"}`, http.StatusServiceUnavailable)
				return
			}
			buf := make([]byte, 0, 64)
			buf = append(buf, `{"pool":`...)
			buf = strconv.AppendQuote(buf, pool)
			buf = append(buf, `,"numbers":["`...)
			buf = fmt.Appendf(buf, "%020d", n)
			buf = append(buf, "\"]}\n"...)
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(buf)
		})
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	slog.Info("listening", "addr", ln.Addr().String(), "mode", mode)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
