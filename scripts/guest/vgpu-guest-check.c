/*
 * vgpu-guest-check: runs inside the test guest (static, from the initramfs).
 *
 * Exercises the Linux virtio-gpu DRM driver against the vgpu backend and prints one
 * "CHECK <name> <ok|fail|info> <detail>" line per step on the console, which the host
 * test parses:
 *   - DRM_IOCTL_VIRTGPU_GETPARAM for every parameter 1..8,
 *   - DRM_IOCTL_VIRTGPU_GET_CAPS for the Venus capset (id 4, version 0, 160 bytes),
 *   - a 2D resource: RESOURCE_CREATE, MAP + mmap + write, GEM close,
 *   - a dumb buffer: CREATE_DUMB, MAP_DUMB + mmap + write, DESTROY_DUMB,
 *   - a known pattern drawn on /dev/fb0 (vertical bars), then "VGPU-PATTERN-READY".
 *
 * With --first-boot it only reads and sets a marker byte in the RTC's CMOS RAM (which
 * survives a QEMU system_reset): exit 0 the first time, 1 once the marker is set, so the
 * init script knows whether it runs before or after the host's reset.
 *
 * The uapi structs are declared here (from include/uapi/drm/{drm,drm_mode,virtgpu_drm}.h
 * layouts) so the program builds with only a C compiler.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fb.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define DRM_IOCTL_BASE 'd'
#define DRM_COMMAND_BASE 0x40
#define DRM_IOWR(nr, type) _IOWR(DRM_IOCTL_BASE, nr, type)
#define DRM_IOW(nr, type) _IOW(DRM_IOCTL_BASE, nr, type)

struct drm_virtgpu_getparam {
    uint64_t param;
    uint64_t value; /* user pointer to an int */
};

struct drm_virtgpu_get_caps {
    uint32_t cap_set_id;
    uint32_t cap_set_ver;
    uint64_t addr;
    uint32_t size;
    uint32_t pad;
};

struct drm_virtgpu_resource_create {
    uint32_t target, format, bind, width, height, depth, array_size, last_level, nr_samples,
        flags, bo_handle, res_handle, size, stride;
};

struct drm_virtgpu_map {
    uint64_t offset;
    uint32_t handle;
    uint32_t pad;
};

struct drm_gem_close {
    uint32_t handle;
    uint32_t pad;
};

struct drm_mode_create_dumb {
    uint32_t height, width, bpp, flags, handle, pitch;
    uint64_t size;
};

struct drm_mode_map_dumb {
    uint32_t handle, pad;
    uint64_t offset;
};

struct drm_mode_destroy_dumb {
    uint32_t handle;
};

#define IOCTL_GETPARAM DRM_IOWR(DRM_COMMAND_BASE + 0x03, struct drm_virtgpu_getparam)
#define IOCTL_GET_CAPS DRM_IOWR(DRM_COMMAND_BASE + 0x09, struct drm_virtgpu_get_caps)
#define IOCTL_RESOURCE_CREATE DRM_IOWR(DRM_COMMAND_BASE + 0x04, struct drm_virtgpu_resource_create)
#define IOCTL_MAP DRM_IOWR(DRM_COMMAND_BASE + 0x01, struct drm_virtgpu_map)
#define IOCTL_GEM_CLOSE DRM_IOW(0x09, struct drm_gem_close)
#define IOCTL_CREATE_DUMB DRM_IOWR(0xB2, struct drm_mode_create_dumb)
#define IOCTL_MAP_DUMB DRM_IOWR(0xB3, struct drm_mode_map_dumb)
#define IOCTL_DESTROY_DUMB DRM_IOWR(0xB4, struct drm_mode_destroy_dumb)

static const char *param_names[] = {
    "", "3D_FEATURES", "CAPSET_QUERY_FIX", "RESOURCE_BLOB", "HOST_VISIBLE",
    "CROSS_DEVICE", "CONTEXT_INIT", "SUPPORTED_CAPSET_IDs", "EXPLICIT_DEBUG_NAME",
};

static int failures;

static void report(const char *name, int ok, const char *detail)
{
    printf("CHECK %s %s %s\n", name, ok ? "ok" : "fail", detail);
    if (!ok)
        failures++;
}

#define check(name, ok, ...)                          \
    do {                                              \
        char detail_[160];                            \
        snprintf(detail_, sizeof detail_, __VA_ARGS__); \
        report(name, ok, detail_);                    \
    } while (0)

/* The pattern: 8 vertical bars, colour of bar i = PATTERN[i] (XRGB8888). */
static const uint32_t PATTERN[8] = {
    0x00ffffff, 0x00ffff00, 0x0000ffff, 0x0000ff00,
    0x00ff00ff, 0x00ff0000, 0x000000ff, 0x00000000,
};

static void draw_fb(void)
{
    int fd = open("/dev/fb0", O_RDWR);
    if (fd < 0) {
        check("fb_open", 0, "errno %d", errno);
        return;
    }
    struct fb_var_screeninfo var;
    struct fb_fix_screeninfo fix;
    if (ioctl(fd, FBIOGET_VSCREENINFO, &var) || ioctl(fd, FBIOGET_FSCREENINFO, &fix)) {
        check("fb_info", 0, "errno %d", errno);
        close(fd);
        return;
    }
    printf("CHECK fb_mode info %ux%u bpp %u\n", var.xres, var.yres, var.bits_per_pixel);
    size_t len = (size_t)fix.line_length * var.yres;
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED || var.bits_per_pixel != 32) {
        check("fb_map", 0, "errno %d bpp %u", errno, var.bits_per_pixel);
        close(fd);
        return;
    }
    for (uint32_t y = 0; y < var.yres; y++) {
        uint32_t *row = (uint32_t *)(p + (size_t)y * fix.line_length);
        for (uint32_t x = 0; x < var.xres; x++)
            row[x] = PATTERN[(x * 8) / var.xres];
    }
    msync(p, len, MS_SYNC);
    check("fb_draw", 1, "%ux%u", var.xres, var.yres);
    munmap(p, len);
    close(fd);
}

/* CMOS byte 0x7d: unused by QEMU (0x5b..0x5f) and SeaBIOS (0x38, 0x3d). */
#define CMOS_MARKER_INDEX 0x7d
#define CMOS_MARKER 0xa5

static int first_boot(void)
{
    if (ioperm(0x70, 2, 1)) {
        printf("CHECK boot_marker fail errno %d\n", errno);
        return 2;
    }
    outb(CMOS_MARKER_INDEX, 0x70);
    if (inb(0x71) == CMOS_MARKER)
        return 1;
    outb(CMOS_MARKER_INDEX, 0x70);
    outb(CMOS_MARKER, 0x71);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 1 && strcmp(argv[1], "--first-boot") == 0)
        return first_boot();
    int fd = open("/dev/dri/card0", O_RDWR);
    check("drm_open", fd >= 0, "errno %d", fd < 0 ? errno : 0);
    if (fd >= 0) {
        for (int p = 1; p <= 8; p++) {
            int value = -1;
            struct drm_virtgpu_getparam gp = {.param = (uint64_t)p, .value = (uint64_t)(uintptr_t)&value};
            int r = ioctl(fd, IOCTL_GETPARAM, &gp);
            printf("CHECK getparam_%s info %s %d\n", param_names[p], r ? "errno" : "value", r ? errno : value);
        }

        uint32_t caps[40];
        memset(caps, 0xa5, sizeof(caps));
        struct drm_virtgpu_get_caps gc = {.cap_set_id = 4, .cap_set_ver = 0,
                                          .addr = (uint64_t)(uintptr_t)caps, .size = sizeof(caps)};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int r = ioctl(fd, IOCTL_GET_CAPS, &gc);
        int err = errno;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        printf("CHECK get_caps_time info %ld ms\n", ms);
        if (r) {
            printf("CHECK get_caps_venus info errno %d\n", err);
            /* Diagnosis: a late answer fills the driver's cache, a lost one does not. */
            r = ioctl(fd, IOCTL_GET_CAPS, &gc);
            printf("CHECK get_caps_retry info %s %d\n", r ? "errno" : "ok", r ? errno : 0);
        } else {
            printf("CHECK get_caps_venus info wire %u vkxml 0x%08x ser %u venus %u blob0 %u mask0 0x%08x\n",
                   caps[0], caps[1], caps[2], caps[3], caps[4], caps[5]);
        }

        /* DRM_IOCTL_VIRTGPU_RESOURCE_CREATE: with VIRGL negotiated the driver sends
         * RESOURCE_CREATE_3D, which vgpu refuses (no virgl renderer); reported as info, the
         * host test checks the refusal. 2D resources come from dumb buffers below. */
        struct drm_virtgpu_resource_create rc = {.target = 2, .format = 2 /* B8G8R8X8 */,
                                                 .bind = 2 /* RENDER_TARGET */, .width = 64,
                                                 .height = 64, .depth = 1, .array_size = 1};
        r = ioctl(fd, IOCTL_RESOURCE_CREATE, &rc);
        printf("CHECK virtgpu_resource_create info %s %d\n", r ? "errno" : "bo", r ? errno : (int)rc.bo_handle);
        if (r == 0) {
            struct drm_virtgpu_map m = {.handle = rc.bo_handle};
            int mr = ioctl(fd, IOCTL_MAP, &m);
            int mapped = 0;
            if (mr == 0) {
                void *px = mmap(NULL, 64 * 64 * 4, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)m.offset);
                mapped = px != MAP_FAILED;
                if (mapped)
                    munmap(px, 64 * 64 * 4);
            }
            printf("CHECK virtgpu_resource_map info %s\n", mapped ? "mapped" : "refused");
            struct drm_gem_close gcl = {.handle = rc.bo_handle};
            r = ioctl(fd, IOCTL_GEM_CLOSE, &gcl);
            check("virtgpu_resource_close", r == 0, "errno %d", r ? errno : 0);
        }

        struct drm_mode_create_dumb cd = {.height = 32, .width = 32, .bpp = 32};
        r = ioctl(fd, IOCTL_CREATE_DUMB, &cd);
        check("dumb_create", r == 0 && cd.handle != 0, "pitch %u size %llu", cd.pitch, (unsigned long long)cd.size);
        if (r == 0) {
            struct drm_mode_map_dumb md = {.handle = cd.handle};
            r = ioctl(fd, IOCTL_MAP_DUMB, &md);
            int ok = r == 0;
            if (ok) {
                uint8_t *b = mmap(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)md.offset);
                ok = b != MAP_FAILED;
                if (ok) {
                    memset(b, 0x5a, cd.size);
                    ok = b[cd.size - 1] == 0x5a;
                    munmap(b, cd.size);
                }
            }
            check("dumb_map_write", ok, "errno %d", ok ? 0 : errno);
            struct drm_mode_destroy_dumb dd = {.handle = cd.handle};
            r = ioctl(fd, IOCTL_DESTROY_DUMB, &dd);
            check("dumb_destroy", r == 0, "errno %d", r ? errno : 0);
        }
        close(fd);
    }
    draw_fb();
    printf("VGPU-PATTERN-READY failures=%d\n", failures);
    return failures ? 1 : 0;
}
