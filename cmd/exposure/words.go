package main

import "fmt"

// plural picks the word for n things.
func plural[N int | int64 | uint64 | uint32](n N, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// counted is n and the word for n things: "1 host", "2 hosts".
func counted[N int | int64 | uint64 | uint32](n N, one, many string) string {
	return fmt.Sprintf("%d %s", n, plural(n, one, many))
}
