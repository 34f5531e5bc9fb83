// SPDX-License-Identifier: MIT

// Package conf reads Miredo 1.2.6's configuration files, miredo.conf and
// miredo-server.conf, unchanged, so our daemons are a drop-in replacement,
// and refuses a bad file at start with "file:line: reason".
//
// One parser serves the three roles. Each role passes a [Schema], the set of
// directives it uses; how a value parses depends only on the directive, since
// every Miredo role reads a given directive the same way. [Parse] returns a
// [File] with typed values and Miredo's defaults, records which directives the
// file set (so command-line flags can override them), and lists [Warning]s.
//
// # Syntax, as Miredo's src/conf.c reads it
//
//   - One "NAME VALUE" pair per line; names are case-insensitive (ASCII only,
//     as C's strcasecmp).
//   - Tokens are separated by C's isspace bytes: space, \t, \n, \v, \f, \r
//     (so CRLF files read the same as LF files).
//   - A line whose first token starts with '#' is a comment, so an executable
//     file's "#!" first line is one too. Blank lines are fine.
//   - A line with one token is ignored with a warning.
//   - A value cannot contain whitespace. Text after it draws a warning
//     (Miredo ignores it silently), unless it is a comment (a token starting
//     with '#').
//   - Lines longer than [MaxLineLength] bytes are skipped with a warning:
//     Miredo reads lines into a 1056-byte buffer, and we keep its limit so a
//     file means the same to both.
//   - Values are consumed first-match: a repeated directive keeps its first
//     value, and later ones draw a warning (Miredo's "Superfluous directive").
//
// # Where we differ from Miredo, on purpose
//
//   - A directive no Miredo role knows (a typo) is an error. Miredo only warns
//     "Superfluous directive" and runs on without the setting, which hides
//     mistakes. A directive Miredo knows but this role does not use (Prefix in
//     client mode) stays a warning, as in Miredo.
//   - A value starting with '#' is a comment, so "InterfaceName #x" is a line
//     without a value (a warning); Miredo would name the interface "#x".
//   - A last line without a newline is read. Miredo skips it as overly long.
//   - A UTF-8 byte order mark at the start of the file is skipped with a
//     warning; Miredo would take it as part of the first directive's name.
//   - A line holding a NUL byte is skipped with a warning; Miredo's C strings
//     end at the NUL, which makes it skip such a line too.
//   - A multicast Prefix (ff00::/8) is refused. Miredo 1.2.6 runs with one
//     (checked: "RelayType cone" and "Prefix ff02::" start a relay), which
//     routes a multicast range into the tunnel and cannot be meant.
//   - "ServerBindAddress2 0.0.0.0", which Miredo reads as "primary + 1", is
//     refused as not global unicast; leaving the directive out says that.
//   - InterfaceMTU below 1280 is refused here; Miredo parses it and then
//     fails to set up the tunnel.
//   - Prefix takes IPv6 literals only; Miredo would also look up a host name's
//     AAAA record there, which no real file uses.
//   - Host names are checked for syntax before they are looked up, and an
//     all-numeric name that is not a valid IPv4 address is refused rather than
//     sent to DNS.
//   - IPv4 values accept what glibc's getaddrinfo reads as IPv4 without DNS:
//     the legacy inet_aton forms ("10.1", "0x7f.1", leading-zero octal) and
//     IPv4-mapped IPv6 ("::ffff:192.0.2.1"), with the same meaning, plus a
//     warning showing the address they denote.
//
// Parse checks what a file can say on its own: syntax, value ranges, that the
// server's addresses are global unicast. What depends on the command line too
// (ServerAddress is required unless a server name is given; the secondary
// server address defaults to the primary plus one) is left to the role, which
// can report it at the right line with [File.ErrorAt].
package conf
