/*
 * Reads the guest's own /proc files into memory first, then prints them: between the first read
 * and the VM's stop the kernel runs on, so everything that allocates is done before the first
 * read (the output port opened and put in raw mode, every file opened, both buffers faulted in),
 * and nothing allocates between the reads.  No fork, no exec, no stdio.
 *
 *   capture OUT_DEVICE FILE...
 *
 * Output: for each file "==> PATH <== LENGTH\n" then LENGTH bytes then "\n"; at the end
 * "==> END <==\n".  OUT_DEVICE is a serial port put in raw mode (no \n -> \r\n translation).
 * Then it sleeps until the dump: its own memory was counted by the files it read, so it must
 * still be there when the VM stops.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define BUF_SIZE (8UL << 20)
#define MAX_FILES 256

static char buf[BUF_SIZE];
static char out[BUF_SIZE + 64 * 1024];

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= w;
	}
}

int main(int argc, char **argv)
{
	size_t off[MAX_FILES], len[MAX_FILES];
	int fds[MAX_FILES];
	size_t used = 0;
	int nfiles = argc - 2;

	if (argc < 3 || nfiles > MAX_FILES) {
		static const char usage[] = "usage: capture OUT_DEVICE FILE... (at most 256 files)\n";
		write_all(2, usage, sizeof(usage) - 1);
		return 2;
	}
	memset(buf, 0, sizeof(buf));
	memset(out, 0, sizeof(out));
	int port = open(argv[1], O_WRONLY | O_NOCTTY);
	if (port < 0) {
		perror(argv[1]);
		return 1;
	}
	struct termios tio;
	if (tcgetattr(port, &tio) == 0) {
		cfmakeraw(&tio);
		cfsetospeed(&tio, B115200);
		tcsetattr(port, TCSANOW, &tio);
	}
	for (int i = 0; i < nfiles; i++)
		fds[i] = open(argv[i + 2], O_RDONLY);
	for (int i = 0; i < nfiles; i++) {
		off[i] = used;
		len[i] = 0;
		if (fds[i] < 0)
			continue;
		for (;;) {
			ssize_t n = read(fds[i], buf + used, BUF_SIZE - used);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			used += n;
		}
		len[i] = used - off[i];
	}
	size_t o = 0;
	for (int i = 0; i < nfiles; i++) {
		o += snprintf(out + o, sizeof(out) - o, "==> %s <== %zu\n", argv[i + 2], len[i]);
		if (o + len[i] + 1 >= sizeof(out))
			break;
		memcpy(out + o, buf + off[i], len[i]);
		o += len[i];
		out[o++] = '\n';
	}
	o += snprintf(out + o, sizeof(out) - o, "==> END <==\n");
	write_all(port, out, o);
	tcdrain(port);
	for (;;)
		pause();
}
