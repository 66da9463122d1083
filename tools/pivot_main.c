/* pivot: the command-line front end. It embeds LuaJIT and runs recipe scripts that drive libpivot
 * through the FFI binding in lua/pivot/init.lua (`require "pivot"`).
 *
 *   pivot run FILE.lua [--name value ...] [--flag] [positional ...]
 *   pivot check-hf DIR [options]     (runs require("pivot.check_hf").main(opts))
 *   pivot devices | version | help
 *
 * Options reach a script as the global table `opts` and as its first vararg (`local opts = ...`):
 * `--steps 10` gives opts.steps = 10 (numeric strings become numbers), `--out-dir x` gives
 * opts.out_dir = "x", a bare `--quick` gives opts.quick = true, `--name=value` works too, and
 * positional arguments go to opts[1], opts[2], ... The global `arg` holds the raw strings (arg[0] is
 * the script, arg[-1] this executable). --backend, --device and --threads also set PIVOT_BACKEND, PIVOT_DEVICE and
 * PIVOT_THREADS, which the runtime honours.
 *
 * Exit status: 0 on success, 1 when the script raises an error (the message and a Lua traceback go to
 * stderr) or returns false / a nonzero number, 2 on usage errors (unknown command, missing file). */
#include "pivot.h"

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PIVOT_SOURCE_DIR
#define PIVOT_SOURCE_DIR "."
#endif

typedef struct command {
  const char *name;
  int (*fn)(int argc, char **argv); /* argv[0] is the command name */
  const char *args;
  const char *help;
} command;

static int cmd_run(int argc, char **argv);
static int cmd_check_hf(int argc, char **argv);
static int cmd_devices(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const command commands[] = {
  {"run", cmd_run, "FILE.lua [--name value ...] [--flag]", "run a recipe script"},
  {"check-hf", cmd_check_hf, "DIR [options]", "check a Hugging Face model directory against pivot"},
  {"devices", cmd_devices, "", "list the backends and devices available here"},
  {"version", cmd_version, "", "print the pivot and LuaJIT versions"},
  {"help", cmd_help, "", "print this help"},
};
#define NCOMMANDS ((int)(sizeof commands / sizeof commands[0]))

static void usage(FILE *f) {
  fprintf(f, "usage: pivot COMMAND [ARGS]\n\ncommands:\n");
  for (int i = 0; i < NCOMMANDS; i++) {
    char left[96];
    snprintf(left, sizeof left, "%s %s", commands[i].name, commands[i].args);
    fprintf(f, "  %-48s %s\n", left, commands[i].help);
  }
  fprintf(f, "\nglobal options (also passed to the script): --backend cpu|vulkan|ref, --device N, --threads N\n"
             "options reach the script as the table `opts` (also its `...`): --steps 10 -> opts.steps = 10,\n"
             "--out-dir x -> opts.out_dir = \"x\", --quick -> opts.quick = true.\n");
}

/* ------------------------------------------------------------ Lua state setup */

/* Directory part of path (without the trailing slash) into buf; "." if none. */
static void dir_of(const char *path, char *buf, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(buf, cap, ".");
  else if (slash == path) snprintf(buf, cap, "/");
  else snprintf(buf, cap, "%.*s", (int)(slash - path), path);
}

/* Prepends to package.path: $PIVOT_LUA_DIR, the source tree's lua/, the install's share/pivot/lua,
 * then the script's own directory (if given). */
static void set_package_path(lua_State *L, const char *script) {
  char exe[PATH_MAX], exedir[PATH_MAX], sdir[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = 0;
    dir_of(exe, exedir, sizeof exedir);
  } else {
    snprintf(exedir, sizeof exedir, ".");
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  const char *src = getenv("PIVOT_LUA_DIR"); /* override for tests and relocated trees */
  if (src && *src) {
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", src, src);
    luaL_addvalue(&b);
  }
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;", PIVOT_SOURCE_DIR, PIVOT_SOURCE_DIR);
  luaL_addvalue(&b);
  lua_pushfstring(L, "%s/../share/pivot/lua/?.lua;%s/../share/pivot/lua/?/init.lua;", exedir, exedir);
  luaL_addvalue(&b);
  if (script) { /* after pivot's own modules, so that e.g. recipes/pivot.lua cannot shadow `require "pivot"` */
    dir_of(script, sdir, sizeof sdir);
    lua_pushfstring(L, "%s/?.lua;", sdir);
    luaL_addvalue(&b);
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  const char *old = lua_tostring(L, -1);
  lua_pop(L, 1);
  luaL_addstring(&b, old ? old : "");
  luaL_pushresult(&b); /* package, path */
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_pushstring(L, PIVOT_SOURCE_DIR);
  lua_setglobal(L, "PIVOT_SOURCE_DIR");
}

/* Message handler: the error text plus a traceback. When pivot.scope() recorded a traceback taken at
 * the point where the error was first raised (it rethrows errors with a module path prefixed), that
 * one is used, so the file and line of the real failure are shown. */
static int msg_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) msg = lua_tostring(L, -1);
    else msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  lua_getglobal(L, "package");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "loaded");
    if (lua_istable(L, -1)) {
      lua_getfield(L, -1, "pivot");
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "_tracebacks");
        if (lua_istable(L, -1)) {
          lua_pushstring(L, msg);
          lua_rawget(L, -2);
          if (lua_isstring(L, -1)) {
            lua_pushfstring(L, "%s\n%s", msg, lua_tostring(L, -1));
            return 1;
          }
        }
      }
    }
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls a function with nargs arguments (function first, arguments above it on the stack) in
 * protected mode with the traceback handler. Returns 0 on success (nres results left on the stack),
 * else 1 after printing the error. */
static int pcall_traceback(lua_State *L, int nargs, int nres) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msg_handler);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  if (rc != 0) {
    const char *m = lua_tostring(L, -1);
    fprintf(stderr, "pivot: error: %s\n", m ? m : "(no message)");
    lua_pop(L, 1);
    return 1;
  }
  return 0;
}

/* Converts "a-b" to "a_b" into buf. */
static void opt_key(const char *s, size_t len, char *buf, size_t cap) {
  if (len >= cap) len = cap - 1;
  for (size_t i = 0; i < len; i++) buf[i] = s[i] == '-' ? '_' : s[i];
  buf[len] = 0;
}

/* Pushes a string option value, converted to a number when the whole string is numeric. */
static void push_value(lua_State *L, const char *v) {
  char *end = NULL;
  errno = 0;
  double d = strtod(v, &end);
  if (*v && end && *end == 0 && errno == 0 && strspn(v, "0123456789+-.eE") == strlen(v)) lua_pushnumber(L, d);
  else lua_pushstring(L, v);
}

static int set_env_option(const char *key, const char *value) {
  if (!strcmp(key, "backend")) return setenv("PIVOT_BACKEND", value, 1);
  if (!strcmp(key, "device")) return setenv("PIVOT_DEVICE", value, 1);
  if (!strcmp(key, "threads")) return setenv("PIVOT_THREADS", value, 1);
  return 0;
}

/* Parses argv[first..argc) into a new table on the stack (see the header comment). Returns 0, or 2
 * after printing an error. */
static int push_opts(lua_State *L, int argc, char **argv, int first) {
  lua_newtable(L);
  int npos = 0;
  for (int i = first; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] == '-' && a[1] == '-' && a[2]) {
      const char *name = a + 2, *eq = strchr(name, '=');
      char key[256];
      const char *value = NULL;
      if (eq) {
        opt_key(name, (size_t)(eq - name), key, sizeof key);
        value = eq + 1;
      } else {
        opt_key(name, strlen(name), key, sizeof key);
        if (i + 1 < argc && !(argv[i + 1][0] == '-' && argv[i + 1][1] == '-')) value = argv[++i];
      }
      if (!key[0]) {
        fprintf(stderr, "pivot: invalid option '%s'\n", a);
        return 2;
      }
      if (value) {
        set_env_option(key, value);
        push_value(L, value);
      } else {
        if (!strcmp(key, "backend") || !strcmp(key, "device") || !strcmp(key, "threads")) {
          fprintf(stderr, "pivot: option --%s needs a value\n", key);
          return 2;
        }
        lua_pushboolean(L, 1);
      }
      lua_setfield(L, -2, key);
    } else if (!strcmp(a, "--")) {
      for (i++; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, ++npos);
      }
    } else {
      lua_pushstring(L, a);
      lua_rawseti(L, -2, ++npos);
    }
  }
  return 0;
}

static lua_State *new_state(const char *script) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "pivot: cannot create a Lua state (out of memory)\n");
    return NULL;
  }
  luaL_openlibs(L);
  set_package_path(L, script);
  return L;
}

/* Exit status from the results of a script: false -> 1, a number -> that number, else 0. */
static int status_from_result(lua_State *L) {
  if (lua_gettop(L) == 0) return 0;
  if (lua_type(L, 1) == LUA_TBOOLEAN) return lua_toboolean(L, 1) ? 0 : 1;
  if (lua_type(L, 1) == LUA_TNUMBER) return (int)lua_tointeger(L, 1);
  return 0;
}

/* ------------------------------------------------------------ commands */
static int cmd_run(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "pivot run: missing script file\nusage: pivot run FILE.lua [--name value ...] [--flag]\n");
    return 2;
  }
  const char *script = argv[1];
  if (access(script, R_OK) != 0) {
    fprintf(stderr, "pivot run: cannot read script '%s': %s\n", script, strerror(errno));
    return 2;
  }
  lua_State *L = new_state(script);
  if (!L) return 1;
  int rc = push_opts(L, argc, argv, 2);
  if (rc) {
    lua_close(L);
    return rc;
  }
  lua_pushvalue(L, -1);
  lua_setglobal(L, "opts"); /* stack: opts */
  lua_newtable(L);          /* arg: the raw strings, arg[0] = script, arg[-1] = this executable */
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);
  }
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  lua_pushstring(L, n > 0 ? exe : "pivot");
  lua_rawseti(L, -2, -1);
  lua_setglobal(L, "arg");
  if (luaL_loadfile(L, script) != 0) {
    fprintf(stderr, "pivot: error: %s\n", lua_tostring(L, -1));
    lua_close(L);
    return 1;
  }
  lua_insert(L, -2); /* chunk, opts */
  if (pcall_traceback(L, 1, LUA_MULTRET)) {
    lua_close(L);
    return 1;
  }
  rc = status_from_result(L);
  lua_settop(L, 0);
  lua_close(L);
  return rc;
}

/* Runs require(module).main(opts) with opts parsed from argv[1..]. */
static int run_module_main(const char *module, int argc, char **argv) {
  lua_State *L = new_state(NULL);
  if (!L) return 1;
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushstring(L, module);
  lua_getfield(L, -3, "path");
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2)) {
    fprintf(stderr, "pivot %s: the Lua module '%s' is not installed in this tree (searched:%s)\n", argv[0], module,
            lua_tostring(L, -1));
    lua_close(L);
    return 2;
  }
  lua_settop(L, 0);
  lua_getglobal(L, "require");
  lua_pushstring(L, module);
  if (pcall_traceback(L, 1, 1)) {
    lua_close(L);
    return 1;
  }
  if (!lua_istable(L, -1)) {
    fprintf(stderr, "pivot %s: module '%s' did not return a table\n", argv[0], module);
    lua_close(L);
    return 1;
  }
  lua_getfield(L, -1, "main");
  if (!lua_isfunction(L, -1)) {
    fprintf(stderr, "pivot %s: module '%s' has no main function\n", argv[0], module);
    lua_close(L);
    return 1;
  }
  lua_remove(L, -2);
  int rc = push_opts(L, argc, argv, 1);
  if (rc) {
    lua_close(L);
    return rc;
  }
  lua_pushvalue(L, -1);
  lua_setglobal(L, "opts");
  if (pcall_traceback(L, 1, LUA_MULTRET)) {
    lua_close(L);
    return 1;
  }
  rc = status_from_result(L);
  lua_settop(L, 0);
  lua_close(L);
  return rc;
}

static int cmd_check_hf(int argc, char **argv) { return run_module_main("pivot.check_hf", argc, argv); }

static int cmd_devices(int argc, char **argv) {
  (void)argc, (void)argv;
  pv_context *ctx = pv_context_new();
  if (!ctx) {
    fprintf(stderr, "pivot devices: out of memory\n");
    return 1;
  }
  static const char *backends[] = {"cpu", "vulkan", "ref"};
  for (int i = 0; i < 3; i++) {
    const char *why = NULL;
    if (pv_backend_available(ctx, backends[i], &why)) {
      char buf[4096];
      if (pv_backend_describe(ctx, backends[i], buf, sizeof buf) == PV_OK) printf("%s\n", buf);
      else printf("%s: available (%s)\n", backends[i], pv_last_error(ctx));
    } else {
      printf("%s: unavailable: %s\n", backends[i], why ? why : "unknown reason");
    }
  }
  pv_context_free(ctx);
  return 0;
}

static int cmd_version(int argc, char **argv) {
  (void)argc, (void)argv;
  printf("pivot %s\n%s\n", pv_version(), LUAJIT_VERSION);
  return 0;
}

static int cmd_help(int argc, char **argv) {
  (void)argc, (void)argv;
  usage(stdout);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stdout);
    return 0;
  }
  const char *name = argv[1];
  if (!strcmp(name, "--help") || !strcmp(name, "-h")) name = "help";
  if (!strcmp(name, "--version")) name = "version";
  for (int i = 0; i < NCOMMANDS; i++)
    if (!strcmp(commands[i].name, name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "pivot: unknown command '%s'\n\n", name);
  usage(stderr);
  return 2;
}
