/*
 * Reads the guest's own /proc files into memory first, then prints them: between the first read
 * and the VM's stop the kernel runs on, so everything that allocates is done before the first
 * read (the output port opened and put in raw mode, every file opened, both buffers faulted in),
 * and nothing allocates between the reads.  No fork, no exec, no stdio.
 *
 *   capture OUT_DEVICE FILE...
 *
 * Output: "==> BEGIN <==\n", "==> READ <==\n" once every file is read (the harness stops and
 * dumps the VM right then), then for each file "==> PATH <== LENGTH\n" then LENGTH bytes then "\n"; at the end
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

/* Fault in the stack the formatting below will use, so no page is faulted after the reads. */
static void __attribute__((noinline)) prefault_stack(void)
{
	volatile char pad[64 * 1024];
	for (size_t i = 0; i < sizeof(pad); i += 4096)
		pad[i] = 0;
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
	prefault_stack();
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
	/* The tty allocates on its first write: do that before the reads too. */
	static const char begin[] = "==> BEGIN <==\n";
	write_all(port, begin, sizeof(begin) - 1);
	tcdrain(port);
	for (int i = 0; i < nfiles; i++)
		fds[i] = open(argv[i + 2], O_RDONLY);
	/*
	 * A /proc file's seq_file buffer (kmalloc-cg-4k, fs/seq_file.c seq_buf_alloc) is allocated
	 * at its first read: read one byte of each and rewind, so that the slab and zone counters
	 * the files print already include every buffer this capture will hold.
	 */
	for (int i = 0; i < nfiles; i++) {
		char c;
		if (fds[i] >= 0 && read(fds[i], &c, 1) >= 0)
			lseek(fds[i], 0, SEEK_SET);
	}
	/*
	 * Let RCU-deferred frees finish first: the page tables of the shell this process was
	 * exec'd from go back through an RCU callback (tlb_remove_table), and a dump once showed
	 * one page-table page fewer than the files read before it ran.
	 */
	usleep(500 * 1000);
	/*
	 * Fold every CPU's vmstat differentials into the zone and global counters now
	 * (mm/vmstat.c vmstat_refresh), as the kernel otherwise does whenever a CPU goes idle
	 * (quiet_vmstat) or every stat_interval: the counters the files print then already hold
	 * what the dump will hold, instead of changing when this CPU idles after the capture.
	 */
	int refresh = open("/proc/sys/vm/stat_refresh", O_WRONLY);
	if (refresh >= 0) {
		write_all(refresh, "1\n", 2);
		close(refresh);
	}
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
	/*
	 * Tell the harness everything is read: it stops the VM and dumps it now, while this
	 * process sleeps, and resumes it afterwards; only then does the printing below run.
	 */
	static const char read_done[] = "==> READ <==\n";
	write_all(port, read_done, sizeof(read_done) - 1);
	tcdrain(port);
	sleep(1);
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
