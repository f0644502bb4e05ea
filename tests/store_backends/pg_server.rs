//! A PostgreSQL server of the test's own (Debian's `postgresql`): initdb and pg_ctl in a fresh
//! temp folder, a unix socket only.

use super::*;

/// A PostgreSQL server of its own, on a unix socket in a temp folder. Stopped and removed on
/// drop, so a failing case does not leave it running.
pub struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    /// initdb refuses root: the server then runs as the `postgres` user.
    as_postgres: bool,
    running: bool,
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
            .expect(
                "PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): \
                 apt-get install postgresql (scripts/test-all.sh does)",
            );
        let euid = Command::new("id").arg("-u").output().unwrap();
        let as_postgres = String::from_utf8_lossy(&euid.stdout).trim() == "0";
        // Under /tmp whatever TMPDIR says: the `postgres` user must reach it, and the socket
        // path must stay under the 107 bytes a unix socket address holds.
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = PathBuf::from(format!("/tmp/consult-pg-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = Postgres {
            dir,
            bin,
            as_postgres,
            running: false,
        };
        if as_postgres {
            pg.check(Command::new("chown").arg("postgres:postgres").arg(&pg.dir));
        }
        pg.check(pg.tool("initdb").args([
            "-D",
            "data",
            "-U",
            "consult",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]));
        let conf = format!(
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nfsync = off\n\
             max_connections = 50\n",
            pg.dir.display()
        );
        let conf_path = pg.dir.join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        let mut pg = pg;
        pg.start_again();
        pg
    }

    /// `name` from the server's bin folder, as the server's user, in its folder.
    pub fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(&self.dir);
        cmd
    }

    pub fn check(&self, cmd: &mut Command) {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start_again(&mut self) {
        self.check(self.tool("pg_ctl").args([
            "-D",
            "data",
            "-l",
            "server.log",
            "-w",
            "-t",
            "30",
            "start",
        ]));
        self.running = true;
    }

    pub fn stop(&mut self) {
        self.check(
            self.tool("pg_ctl")
                .args(["-D", "data", "-m", "fast", "-w", "stop"]),
        );
        self.running = false;
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://consult@/{db}?host={}", self.dir.display())
    }

    /// Runs `sql` on database `db`, as the superuser.
    pub fn sql(&self, db: &str, sql: &str) {
        let mut admin = postgres::Client::connect(&self.url(db), postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test server: {e:?}"));
        admin
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
    }

    /// Store options on a new, empty database `name`.
    pub fn fresh(&self, name: &str) -> StoreOptions {
        self.sql("postgres", &format!("CREATE DATABASE {name}"));
        StoreOptions {
            db_path: PathBuf::from("/nonexistent/unused.sqlite"),
            database_url: Some(DatabaseUrl::parse(&self.url(name)).unwrap()),
            token_secret: None,
            public_url: "https://consult.example".into(),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .tool("pg_ctl")
                .args(["-D", "data", "-m", "immediate", "-w", "stop"])
                .output();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            eprintln!("PostgreSQL log:\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
