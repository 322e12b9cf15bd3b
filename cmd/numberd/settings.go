package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// A setting is one value of a command's configuration, given by its flag or its
// environment variable. A command's settings are read by readSettings alone, so
// that a malformed value is refused at start, naming where it came from and the
// form it must take, rather than replaced by a default without a word.
type setting struct {
	flag  string // without its dashes; empty for a variable alone
	env   string // empty for a flag alone
	usage string
	kind
}

// A kind reads the text of a setting into the value it configures.
type kind struct {
	arg    string            // names the value in the usage: "n", "duration"
	form   string            // what the text must be, for the usage and errors
	def    string            // the default, as text
	free   bool              // any text is of the form
	isBool bool              // the flag alone means true
	set    func(string) bool // stores the value of text; false if text is not of the form
}

// key names a setting in the map readSettings returns: its flag, or its variable.
func (s setting) key() string { return cmp.Or(s.flag, s.env) }

// name names a setting for a message: its flag, or its variable.
func (s setting) name() string {
	if s.flag != "" {
		return "--" + s.flag
	}
	return s.env
}

// refuse is the error of text, given by the flag, variable or file field name,
// not being of form.
func refuse(name, text, form string) error {
	if isVariable(name) {
		return fmt.Errorf("%s=%q: want %s", name, text, form)
	}
	return fmt.Errorf("%s %q: want %s", name, text, form)
}

// isVariable reports whether name is an environment variable's, such as
// NUMBERD_LEASE_MAX or GOGC, rather than a flag's or a file field's.
func isVariable(name string) bool {
	return name != "" && strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == ""
}

// readSettings parses args as the flags of settings and reads every setting: its
// default, then its variable's value if the variable is set and not empty, then its
// flag's if the flag is given. It returns where each value came from, by
// setting.key, and the error of every value not of its form, all at once. An
// unknown flag or an argument is errUsage, said on fs's output; -h is flag.ErrHelp.
func readSettings(fs *flag.FlagSet, args []string, head string, settings []setting) (map[string]string, error) {
	given := make([]flagText, len(settings))
	for i, s := range settings {
		if s.flag != "" {
			given[i].isBool = s.isBool
			fs.Var(&given[i], s.flag, s.usage)
		}
	}
	fs.Usage = func() { printUsage(fs.Output(), head, settings) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage // the flag package said why
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return nil, errUsage
	}
	from := map[string]string{}
	var errs []error
	for i, s := range settings {
		text, name := s.def, s.name()
		if v := os.Getenv(s.env); s.env != "" && v != "" {
			text, name = v, s.env
		}
		if given[i].set {
			text, name = given[i].text, "--"+s.flag
		}
		from[s.key()] = name
		if !s.set(text) {
			errs = append(errs, refuse(name, text, s.form))
		}
	}
	return from, errors.Join(errs...)
}

// flagText is a flag's text as given, read by its setting's kind once every flag
// and variable is known.
type flagText struct {
	text   string
	set    bool
	isBool bool
}

func (f *flagText) String() string   { return f.text }
func (f *flagText) IsBoolFlag() bool { return f.isBool }

func (f *flagText) Set(s string) error {
	f.text, f.set = s, true
	return nil
}

// printUsage writes the usage of a command of settings: each flag with its
// variable, what it sets, the form of its value and its default, then the
// variables without a flag.
func printUsage(w io.Writer, head string, settings []setting) {
	fmt.Fprintln(w, head)
	fmt.Fprintln(w, "Each flag has an environment variable; a flag given wins, and an empty variable counts as unset.")
	fmt.Fprintln(w, "A value not of its form stops the command at start (exit status 1).")
	describe := func(s setting) {
		fmt.Fprintf(w, "    \t%s", s.usage)
		if !s.free && !s.isBool {
			fmt.Fprintf(w, "; %s", s.form)
		}
		if s.def != "" && !s.isBool {
			fmt.Fprintf(w, " (default %s)", s.def)
		}
		fmt.Fprintln(w)
	}
	for _, s := range settings {
		if s.flag == "" {
			continue
		}
		fmt.Fprintf(w, "  --%s", s.flag)
		if !s.isBool {
			fmt.Fprintf(w, " %s", s.arg)
		}
		switch {
		case s.isBool:
			fmt.Fprintf(w, " (%s=true)\n", s.env)
		case s.env != "":
			fmt.Fprintf(w, " (%s)\n", s.env)
		default:
			fmt.Fprintln(w)
		}
		describe(s)
	}
	fmt.Fprintln(w, "Environment variables without a flag:")
	for _, s := range settings {
		if s.flag == "" {
			fmt.Fprintf(w, "  %s\n", s.env)
			describe(s)
		}
	}
}

// text is a setting of any text.
func text(dst *string, def string) kind {
	return kind{arg: "string", def: def, free: true, set: func(s string) bool {
		*dst = s
		return true
	}}
}

// choice is a setting of one of choices.
func choice(dst *string, def string, choices ...string) kind {
	return kind{arg: strings.Join(choices, "|"), form: orList(choices), def: def, set: func(s string) bool {
		for _, c := range choices {
			if s == c {
				*dst = s
				return true
			}
		}
		return false
	}}
}

// level is a log level setting.
func level(dst *slog.Level, def slog.Level) kind {
	return kind{arg: "level", form: "debug, info, warn or error", def: strings.ToLower(def.String()), set: func(s string) bool {
		return dst.UnmarshalText([]byte(s)) == nil
	}}
}

// address is a listen address setting.
func address(dst *string, def string) kind {
	return kind{arg: "host:port", form: "host:port (port 0: any free port)", def: def, set: func(s string) bool {
		_, port, err := net.SplitHostPort(s)
		if err != nil {
			return false
		}
		if _, err := net.LookupPort("tcp", port); err != nil {
			return false
		}
		*dst = s
		return true
	}}
}

// whole is a setting of a whole number from lo to hi, written in decimal digits
// alone: no sign but a minus, no 0x, no underscores, so that 010 is ten.
func whole[T ~int | ~int64 | ~uint64](dst *T, def, lo, hi T) kind {
	return kind{arg: "n", form: fmt.Sprintf("a whole number from %d to %d", lo, hi), def: fmt.Sprint(def), set: func(s string) bool {
		n, ok := parseWhole[T](s)
		if !ok || n < lo || n > hi {
			return false
		}
		*dst = n
		return true
	}}
}

// parseWhole parses s as a T; ok is false if s is not decimal digits, with a minus
// at most, or its value does not fit in a T.
func parseWhole[T ~int | ~int64 | ~uint64](s string) (n T, ok bool) {
	if strings.HasPrefix(s, "+") {
		return 0, false
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		n = T(u)
		return n, n >= 0 && uint64(n) == u
	}
	i, err := strconv.ParseInt(s, 10, 64)
	n = T(i)
	return n, err == nil && n < 0 && int64(n) == i
}

// probability is a setting of a number from 0 to 1.
func probability(dst *float64) kind {
	return kind{arg: "p", form: "a number from 0 to 1, such as 0.2", def: "0", set: func(s string) bool {
		p, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(p) || p < 0 || p > 1 {
			return false
		}
		*dst = p
		return true
	}}
}

// duration is a setting of a duration of lo or more.
func duration(dst *time.Duration, def, lo time.Duration) kind {
	form := "a duration with a unit, such as 500ms or 5s, "
	switch lo {
	case 0:
		form += "0 or more"
	case time.Nanosecond:
		form += "more than 0"
	default:
		form += "at least " + lo.String()
	}
	return kind{arg: "duration", form: form, def: def.String(), set: func(s string) bool {
		d, err := time.ParseDuration(s)
		if err != nil || d < lo {
			return false
		}
		*dst = d
		return true
	}}
}

// boolean is a setting of true or false, false by default.
func boolean(dst *bool) kind {
	return kind{form: "true or false (or 1 or 0)", def: "false", isBool: true, set: func(s string) bool {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false
		}
		*dst = b
		return true
	}}
}

// defaultGCPercent is the garbage collector's target unless GOGC is set.
const defaultGCPercent = 400

// gcSetting is GOGC, the Go runtime's garbage collector target, which the runtime
// itself would read as 100 when malformed. numberd's live heap is a few
// megabytes, so the runtime's default (collect when the heap doubles) means a
// collection every few thousand requests under load; four times the live heap
// still costs little memory and far fewer collections.
func gcSetting(dst *int) setting {
	k := whole(dst, defaultGCPercent, 0, math.MaxInt32)
	set := k.set
	k.arg, k.form = "percent", "off or "+k.form
	k.set = func(s string) bool {
		if s == "off" {
			*dst = -1
			return true
		}
		return set(s)
	}
	return setting{env: "GOGC", usage: "the garbage collector's target, in percent of the live heap", kind: k}
}

// logSettings are the log's level and format settings.
func logSettings(lvl *slog.Level, format *string, levelUsage string) []setting {
	return []setting{
		{flag: "log-level", env: "NUMBERD_LOG_LEVEL", usage: levelUsage, kind: level(lvl, slog.LevelInfo)},
		{flag: "log-format", env: "NUMBERD_LOG_FORMAT", usage: "the log's format", kind: choice(format, "text", "text", "json")},
	}
}

// newLogger returns a logger to w at lvl, in format ("text" or "json").
func newLogger(w io.Writer, lvl slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}
