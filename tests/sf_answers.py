"""Salesforce answered in-process, in the shapes of /work/shared/design/salesforce-shapes.md.

``FakeOrg`` holds a few tables and answers SOQL by evaluating it: it selects exactly the fields asked
for (``attributes`` on every record and every nested parent, ``null`` for an empty lookup), filters by
the WHERE clause, pages by 2,000 with ``nextRecordsUrl``, and refuses what Salesforce refuses (an
unknown field, a field selected twice, a semi-join combined with OR, more than two semi-joins). So a
test checks what a query really selects, not what the code hoped it would.

It reads only the SOQL subset repsend writes: ``SELECT f, ... FROM Obj [WHERE ...]`` (or ``SELECT COUNT()``)
with AND, OR, parentheses, ``=``/``!=``/``>=``/``<=``/``>``/``<`` against true, false, null, dates, datetimes
and quoted strings, and ``field [NOT] IN (SELECT ...)``.

It also answers the Bulk API 2.0 query endpoints as simple-salesforce 1.12.10 calls them (bulk2.py,
``SFBulk2Type.query``): POST ``/jobs/query`` creates a job (job info JSON, state ``UploadComplete``);
GET ``/jobs/query/{id}`` is polled until ``JobComplete`` (or ``Failed`` with ``errorMessage``); GET
``/jobs/query/{id}/results?maxRecords=N[&locator=L]`` returns one CSV set (header row, every value quoted,
LF, ``true``/``false``, empty for null, a parent field as ``Account.Name``) with the headers
``Sforce-NumberOfRecords`` and ``Sforce-Locator`` (the string ``null`` on the last set). Shapes from
Salesforce's Bulk API 2.0 guide: "Create a Query Job", "Get Information About a Query Job", "Get Results
for a Query Job".
"""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import requests
import responses

API = "59.0"
INSTANCE = "acme.my.salesforce.com"
ORG = "00D5g000004XYZ"
SESSION = "00D5g000004XYZ!AQ0AQFAKESESSION"

SCHEMA: dict[str, tuple[str, ...]] = {
    "User": ("Id", "Name", "FirstName", "LastName", "Email", "IsActive", "Title", "Phone", "Signature"),
    "Account": ("Id", "Name", "Industry", "OwnerId"),
    "Contact": (
        "Id", "FirstName", "LastName", "Email", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate",
        "CreatedDate", "AccountId", "OwnerId", "Title", "MailingCountry", "Department", "Region__c",
    ),
    "Opportunity": (
        "Id", "Name", "AccountId", "ContactId", "IsClosed", "IsWon", "StageName", "CloseDate", "OwnerId",
        "LastModifiedDate",
    ),
    "OpportunityContactRole": ("Id", "OpportunityId", "ContactId", "Role", "IsPrimary"),
}  # fmt: skip
# Relationship name -> the object it points at, through the field "<name>Id".
RELATIONS: dict[str, dict[str, str]] = {
    "User": {},
    "Account": {"Owner": "User"},
    "Contact": {"Account": "Account", "Owner": "User"},
    "Opportunity": {"Account": "Account", "Contact": "Contact", "Owner": "User"},
    "OpportunityContactRole": {"Opportunity": "Opportunity", "Contact": "Contact"},
}
PREFIX = {"User": "005", "Account": "001", "Contact": "003", "Opportunity": "006", "OpportunityContactRole": "00K"}


def sfid(sobject: str, n: int) -> str:
    """An 18-character ID of the object's key prefix (the checksum part is not a real one)."""
    return f"{PREFIX[sobject]}5g{n:010d}AAA"


def login_ok(instance: str = INSTANCE, version: str = API) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>https://{instance}/services/Soap/m/{version}/{ORG}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>https://{instance}/services/Soap/u/{version}/{ORG}</serverUrl>"
        f"<sessionId>{SESSION}</sessionId><userId>0055g00000AbCdEAAV</userId>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )


LOGIN_FAULT = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
    'envelope/" xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
    "<soapenv:Body><soapenv:Fault><faultcode>INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid "
    "username, password, security token; or user locked out.</faultstring><detail><sf:LoginFault "
    'xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode><sf:exceptionMessage>Invalid '
    "username, password, security token; or user locked out.</sf:exceptionMessage></sf:LoginFault></detail>"
    "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
)

SESSION_EXPIRED = (401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
LIMIT_EXCEEDED = (403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
SERVER_DOWN = (503, [{"message": "Server is temporarily unavailable", "errorCode": "SERVER_UNAVAILABLE"}])


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


NullSemantics = Literal["sql", "lenient"]


class FakeOrg:
    """A small org answering queries at https://{instance}/services/data/v{version}/query/.

    ``null_semantics`` says what a semi-join does with nulls, which no Salesforce page we found states:
    "sql" as SQL (a null never matches IN nor passes NOT IN, a null in the sub-select empties NOT IN),
    "lenient" as SOQL's ``!=`` does (a null is a value like another: it passes NOT IN unless the sub-select
    holds a null too). Code that is right under both does not depend on it.
    """

    page_size = 2000

    def __init__(
        self, instance: str = INSTANCE, version: str = API, null_semantics: NullSemantics = "sql"
    ) -> None:
        self.instance, self.version, self.null_semantics = instance, version, null_semantics
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SCHEMA}
        self.queries: list[str] = []
        self.calls = 0
        # (part of the URL path, answer): the next request whose path holds it gets the answer instead.
        self.failures: list[tuple[str, tuple[int, Any] | Exception]] = []
        # What each answered request was: (kind, SOQL), kind one of query, more, count, bulk-create,
        # bulk-poll, bulk-results; a benchmark sorts the calls by it.
        self.answered: list[tuple[str, str]] = []
        self.sizes: dict[str, int] = {}  # SOQL -> the records it matched, when last run
        # Bulk API 2.0: how many polls answer InProgress before JobComplete, and the errorMessage the
        # next job fails with (state Failed), if any.
        self.bulk_polls_in_progress = 0
        self.bulk_failure: str | None = None
        # A test's change to the CSV text of each results set, as sent (a malformed set, capital headers).
        self.bulk_results_edit: Callable[[str], str] | None = None
        self.jobs: dict[str, _Job] = {}
        self._cursors: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self._serial = itertools.count(1)

    # -- data --------------------------------------------------------------------------------------

    def add(self, sobject: str, **fields: Any) -> dict[str, Any]:
        unknown = set(fields) - set(SCHEMA[sobject])
        assert not unknown, f"{sobject} has no {unknown}"
        row = dict.fromkeys(SCHEMA[sobject])
        row.update(fields)
        if not row["Id"]:
            row["Id"] = sfid(sobject, len(self.tables[sobject]) + 1)
        self.tables[sobject][row["Id"]] = row
        return row

    def forget(self) -> None:
        """Drop what past requests left (cursors, jobs, the logs), keeping the data: a fresh session."""
        self.queries.clear()
        self.answered.clear()
        self.sizes.clear()
        self._cursors.clear()
        self.jobs.clear()
        self.calls = 0

    # -- HTTP --------------------------------------------------------------------------------------

    def install(self, rsps: responses.RequestsMock, login_domain: str | None = "login") -> None:
        """Answer queries; and the SOAP login at ``{login_domain}.salesforce.com`` unless None."""
        base = re.escape(f"https://{self.instance}/services/data/v{self.version}/query/")
        rsps.add_callback(responses.GET, re.compile(base + ".*"), callback=self._answer)
        jobs = re.compile(re.escape(f"https://{self.instance}/services/data/v{self.version}/jobs/query") + ".*")
        rsps.add_callback(responses.POST, jobs, callback=self._bulk)
        rsps.add_callback(responses.GET, jobs, callback=self._bulk)
        if login_domain is not None:
            rsps.add(
                responses.POST,
                f"https://{login_domain}.salesforce.com/services/Soap/u/{self.version}",
                body=login_ok(self.instance, self.version),
                content_type="text/xml",
            )

    def _answer(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str] | Exception:
        self.calls += 1
        url = urlparse(request.url or "")
        failed = self._failure(request)
        if failed is not None:
            return failed
        if url.path.endswith("/query/"):
            soql = parse_qs(url.query)["q"][0]
            self.queries.append(soql)
            try:
                select = _Parser(soql).statement()
                rows = self._rows(select, soql)
                if select.count:  # SELECT COUNT(): the number in totalSize, no records
                    self.answered.append(("count", soql))
                    return self._json(200, {"totalSize": len(rows), "done": True, "records": []})
                records = self._records(select, rows, soql)
            except SoqlError as exc:
                self.answered.append(("query", soql))
                return self._json(400, [{"message": exc.message, "errorCode": exc.code}])
            self.answered.append(("query", soql))
            self.sizes[soql] = len(records)
            locator = f"01g5g{next(self._serial):010d}AAA"
            self._cursors[locator] = (soql, records)
            return self._json(200, self._page(locator, 0))
        locator, _, offset = url.path.rsplit("/", 1)[1].partition("-")
        self.answered.append(("more", self._cursors[locator][0]))
        return self._json(200, self._page(locator, int(offset)))

    def _failure(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str] | Exception | None:
        """The answer a test queued for this request (by a part of its URL), if any."""
        for i, (part, failure) in enumerate(self.failures):
            if part in (request.url or ""):
                del self.failures[i]
                if isinstance(failure, Exception):
                    failure.request = request  # as requests does
                    return failure
                return self._json(failure[0], failure[1])
        return None

    def _page(self, locator: str, offset: int) -> dict[str, Any]:
        records = self._cursors[locator][1]
        end = offset + self.page_size
        page: dict[str, Any] = {"totalSize": len(records), "done": end >= len(records)}
        if not page["done"]:
            page["nextRecordsUrl"] = f"/services/data/v{self.version}/query/{locator}-{end}"
        page["records"] = records[offset:end]
        return page

    def _json(self, status: int, body: Any) -> tuple[int, dict[str, str], str]:
        headers = {
            "Content-Type": "application/json;charset=UTF-8",
            "Sforce-Limit-Info": f"api-usage={self.calls}/15000",
        }
        return status, headers, json.dumps(body, ensure_ascii=False)

    # -- Bulk API 2.0 ------------------------------------------------------------------------------

    def _bulk(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str] | Exception:
        self.calls += 1
        failed = self._failure(request)
        if failed is not None:
            return failed
        url = urlparse(request.url or "")
        tail = url.path.split("/jobs/query", 1)[1].strip("/")
        if request.method == "POST" and not tail:
            return self._bulk_create(request)
        job_id, _, what = tail.partition("/")
        job = self.jobs.get(job_id)
        if job is None:
            return self._json(404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
        if what == "results":
            return self._bulk_results(job, parse_qs(url.query))
        self.answered.append(("bulk-poll", job.soql))
        if job.polls_left > 0:
            job.polls_left -= 1
            job.info["state"] = "InProgress"
        else:
            job.info.update(job.final)
        return self._json(200, job.info)

    def _bulk_create(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        # No real sleep may happen while a job "runs": simple-salesforce waits with bulk2.sleep.
        from simple_salesforce import bulk2

        assert bulk2.sleep is not time.sleep, "patch simple_salesforce.bulk2.sleep: a test never really sleeps"
        body = json.loads(request.body or "{}")
        soql = body.get("query", "")
        self.answered.append(("bulk-create", soql))
        self.queries.append(soql)
        try:
            select = _Parser(soql).statement()
            if select.count:  # the guide says Bulk API 2.0 refuses COUNT(); the real wording is not known here
                raise SoqlError("MALFORMED_QUERY", "(fake) Bulk API 2.0 does not support aggregate functions")
            rows = self._rows(select, soql)
            paths = self._resolve_fields(select, soql)
        except SoqlError as exc:
            return self._json(400, [{"errorCode": exc.code, "message": exc.message}])
        self.sizes[soql] = len(rows)
        job_id = f"7505g{next(self._serial):010d}AAA"
        info: dict[str, Any] = {
            "id": job_id,
            "operation": body.get("operation", "query"),
            "object": select.sobject,
            "createdById": "0055g00000AbCdEAAV",
            "createdDate": "2025-06-02T01:00:00.000+0000",
            "systemModstamp": "2025-06-02T01:00:00.000+0000",
            "state": "UploadComplete",
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.version),
            "lineEnding": body.get("lineEnding", "LF"),
            "columnDelimiter": body.get("columnDelimiter", "COMMA"),
        }
        final: dict[str, Any] = {"jobType": "V2Query", "numberRecordsProcessed": len(rows), "retries": 0,
                                 "totalProcessingTime": 334, "isPkChunkingSupported": True}
        if self.bulk_failure is not None:
            final.update(state="Failed", errorMessage=self.bulk_failure, numberRecordsProcessed=0)
            self.bulk_failure = None
        else:
            final["state"] = "JobComplete"
        header = [".".join(path) for path in paths]
        lines = [[_csv_value(self._get(select.sobject, row, path)) for path in paths] for row in rows]
        self.jobs[job_id] = _Job(soql, info, final, self.bulk_polls_in_progress, header, lines)
        return self._json(200, info)

    def _bulk_results(self, job: _Job, params: dict[str, list[str]]) -> tuple[int, dict[str, str], str]:
        self.answered.append(("bulk-results", job.soql))
        if job.final["state"] != "JobComplete" or job.info["state"] != "JobComplete":
            return self._json(412, [{"errorCode": "JOB_NOT_COMPLETE", "message": "can only download query "
                                     "results of successfully completed bulk job with status: JOB_COMPLETE"}])
        max_records = int(params.get("maxRecords", ["50000"])[0])
        locator = params.get("locator", [""])[0]
        start = int(base64.b64decode(locator + "=" * (-len(locator) % 4))) if locator else 0
        end = min(start + max_records, len(job.lines))
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(job.header)  # every set is a whole CSV, header first
        writer.writerows(job.lines[start:end])
        following = base64.b64encode(str(end).encode()).decode().rstrip("=") if end < len(job.lines) else "null"
        headers = {
            "Content-Type": "text/csv",
            "Sforce-Locator": following,
            "Sforce-NumberOfRecords": str(end - start),
            "Sforce-Limit-Info": f"api-usage={self.calls}/15000",
        }
        text = buffer.getvalue()
        return 200, headers, self.bulk_results_edit(text) if self.bulk_results_edit else text

    # -- SOQL --------------------------------------------------------------------------------------

    def run(self, soql: str) -> list[dict[str, Any]]:
        select = _Parser(soql).statement()
        return self._records(select, self._rows(select, soql), soql)

    def _rows(self, select: _Select, soql: str) -> list[dict[str, Any]]:
        """The table rows a query matches, after refusing what Salesforce refuses."""
        semi = _semi_joins(select.where)
        if len(semi) > 2:
            raise SoqlError("MALFORMED_QUERY", "Maximum 2 semi join sub-selects are allowed")
        if _semi_under_or(select.where):
            raise SoqlError("MALFORMED_QUERY", "Semi join sub-selects are not allowed with the 'OR' operator")
        test = self._predicate(select.sobject, select.where, soql)
        return [row for row in self.tables[select.sobject].values() if test(row)]

    def _records(self, select: _Select, rows: list[dict[str, Any]], soql: str) -> list[dict[str, Any]]:
        paths = self._resolve_fields(select, soql)
        return [self._project(select.sobject, row, paths) for row in rows]

    def _resolve_fields(self, select: _Select, soql: str) -> list[list[str]]:
        paths, seen = [], set()
        for name in select.fields:
            path = self._resolve(select.sobject, name, soql)
            key = ".".join(path).lower()
            if key in seen:
                raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {name}")
            seen.add(key)
            paths.append(path)
        return paths

    def _resolve(self, sobject: str, name: str, soql: str) -> list[str]:
        """The canonical spelling of a (dotted) field, or INVALID_FIELD as Salesforce words it."""
        head, _, rest = name.partition(".")
        where = f"\n{soql[:60]}\n^\nERROR at Row:1:Column:8\n"
        if rest:
            rel = next((r for r in RELATIONS[sobject] if r.lower() == head.lower()), None)
            if rel is None:
                raise SoqlError(
                    "INVALID_FIELD",
                    f"{where}Didn't understand relationship '{head}' in field path. If you are attempting to "
                    "use a custom relationship, be sure to append the '__r' after the custom relationship "
                    "name. Please reference your WSDL or the describe call for the appropriate names.",
                )
            return [rel, *self._resolve(RELATIONS[sobject][rel], rest, soql)]
        field = next((f for f in SCHEMA[sobject] if f.lower() == name.lower()), None)
        if field is None:
            raise SoqlError(
                "INVALID_FIELD",
                f"{where}No such column '{name}' on entity '{sobject}'. If you are attempting to use a custom "
                "field, be sure to append the '__c' after the custom field name. Please reference your WSDL "
                "or the describe call for the appropriate names.",
            )
        return [field]

    def _get(self, sobject: str, row: dict[str, Any] | None, path: list[str]) -> Any:
        if row is None:
            return None
        if len(path) == 1:
            return row[path[0]]
        target = RELATIONS[sobject][path[0]]
        return self._get(target, self.tables[target].get(row[path[0] + "Id"] or ""), path[1:])

    def _attributes(self, sobject: str, sid: str) -> dict[str, str]:
        return {"type": sobject, "url": f"/services/data/v{self.version}/sobjects/{sobject}/{sid}"}

    def _project(self, sobject: str, row: dict[str, Any], paths: list[list[str]]) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": self._attributes(sobject, row["Id"])}
        for path in paths:
            self._put(sobject, row, path, record)
        return record

    def _put(self, sobject: str, row: dict[str, Any], path: list[str], record: dict[str, Any]) -> None:
        if len(path) == 1:
            record[path[0]] = row[path[0]]
            return
        rel = path[0]
        target = RELATIONS[sobject][rel]
        parent = self.tables[target].get(row[rel + "Id"] or "")
        if parent is None:
            record[rel] = None  # an empty lookup is null, not a dict of nulls
            return
        nested = record.get(rel) or {"attributes": self._attributes(target, parent["Id"])}
        record[rel] = nested
        self._put(target, parent, path[1:], nested)

    def _predicate(self, sobject: str, node: Any, soql: str) -> Callable[[dict[str, Any]], bool]:
        if node is None:
            return lambda row: True
        kind = node[0]
        if kind in ("and", "or"):
            parts = [self._predicate(sobject, n, soql) for n in node[1]]
            combine = all if kind == "and" else any
            return lambda row: combine(p(row) for p in parts)
        path = self._resolve(sobject, node[1], soql)
        if kind == "cmp":
            op, literal = node[2], _literal(node[3])
            return lambda row: _compare(self._get(sobject, row, path), op, literal)
        sub: _Select = node[2]
        if len(sub.fields) != 1 or _semi_joins(sub.where):
            raise SoqlError("MALFORMED_QUERY", "a semi join sub-select selects one field and nests no other")
        sub_path = self._resolve(sub.sobject, sub.fields[0], soql)
        sub_test = self._predicate(sub.sobject, sub.where, soql)
        values = {self._get(sub.sobject, r, sub_path) for r in self.tables[sub.sobject].values() if sub_test(r)}
        negate = kind == "notin"

        def test(row: dict[str, Any]) -> bool:
            value = self._get(sobject, row, path)
            if self.null_semantics == "sql" and (value is None or (negate and None in values)):
                return False
            return (value in values) != negate

        return test


def _compare(value: Any, op: str, literal: Any) -> bool:
    if literal is None:
        return (value is None) == (op == "=")
    if value is None:
        return op == "!="  # SOQL: `Field != 'x'` returns the records where Field is null
    if isinstance(literal, datetime):
        value = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    elif isinstance(literal, date):
        value = date.fromisoformat(value[:10])
    return {
        "=": value == literal,
        "!=": value != literal,
        ">=": value >= literal,
        "<=": value <= literal,
        ">": value > literal,
        "<": value < literal,
    }[op]


def _literal(token: str) -> Any:
    lowered = token.lower()
    if lowered in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[lowered]
    if token.startswith("'"):
        return token[1:-1].replace("\\'", "'")
    if "T" in token:
        return datetime.fromisoformat(token)
    return date.fromisoformat(token)


class _Select:
    def __init__(self, fields: list[str], sobject: str, where: Any, count: bool = False) -> None:
        self.fields, self.sobject, self.where, self.count = fields, sobject, where, count


class _Job:
    """A Bulk API 2.0 query job: its info, what it ends as, and its result rows (CSV values)."""

    def __init__(
        self, soql: str, info: dict[str, Any], final: dict[str, Any], polls: int, header: list[str],
        lines: list[list[str]],
    ) -> None:
        self.soql, self.info, self.final, self.polls_left = soql, info, final, polls
        self.header, self.lines = header, lines


_DATETIME_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000")


def _csv_value(value: Any) -> str:
    """A value as a Bulk API 2.0 CSV writes it: true/false, empty for null, a UTC datetime ending in Z."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _DATETIME_UTC.fullmatch(text):
        return text[:-5] + "Z"
    return text


_TOKEN = re.compile(r"\s*(?:('(?:[^'\\]|\\.)*')|(!=|>=|<=|=|<|>|\(|\)|,)|([A-Za-z0-9_.:+\-]+))")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token at {pos}: {text[pos:pos + 20]!r}")
            self.tokens.append(next(g for g in match.groups() if g is not None))
            pos = match.end()
        self.at = 0

    def peek(self, *words: str) -> bool:
        return self.at < len(self.tokens) and self.tokens[self.at].upper() in words

    def take(self, word: str | None = None) -> str:
        if self.at >= len(self.tokens) or (word and self.tokens[self.at].upper() != word):
            raise SoqlError("MALFORMED_QUERY", f"expected {word or 'more'} at token {self.at}")
        self.at += 1
        return self.tokens[self.at - 1]

    def statement(self) -> _Select:
        select = self.select()
        if self.at != len(self.tokens):
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: {self.tokens[self.at]}")
        return select

    def select(self) -> _Select:
        self.take("SELECT")
        count = self.peek("COUNT") and self.tokens[self.at + 1 : self.at + 3] == ["(", ")"]
        if count:
            self.at += 3
            fields: list[str] = []
        else:
            fields = [self.take()]
            while self.peek(","):
                self.take(",")
                fields.append(self.take())
        self.take("FROM")
        sobject = self.take()
        if sobject not in SCHEMA:
            raise SoqlError("INVALID_TYPE", f"sObject type '{sobject}' is not supported.")
        where = None
        if self.peek("WHERE"):
            self.take("WHERE")
            where = self.disjunction()
        return _Select(fields, sobject, where, count)

    def disjunction(self) -> Any:
        parts = [self.conjunction()]
        while self.peek("OR"):
            self.take("OR")
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conjunction(self) -> Any:
        parts = [self.atom()]
        while self.peek("AND"):
            self.take("AND")
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def atom(self) -> Any:
        if self.peek("("):
            self.take("(")
            node = self.disjunction()
            self.take(")")
            return node
        name = self.take()
        if self.peek("NOT", "IN"):
            kind = "in"
            if self.peek("NOT"):
                self.take("NOT")
                kind = "notin"
            self.take("IN")
            self.take("(")
            sub = self.select()
            self.take(")")
            return (kind, name, sub)
        op = self.take()
        if op not in ("=", "!=", ">=", "<=", ">", "<"):
            raise SoqlError("MALFORMED_QUERY", f"unexpected operator {op}")
        return ("cmp", name, op, self.take())


def _semi_joins(node: Any) -> list[Any]:
    if node is None or node[0] == "cmp":
        return []
    if node[0] in ("in", "notin"):
        return [node]
    return [s for n in node[1] for s in _semi_joins(n)]


def _semi_under_or(node: Any) -> bool:
    if node is None or node[0] in ("cmp", "in", "notin"):
        return False
    if node[0] == "or" and _semi_joins(node):
        return True
    return any(_semi_under_or(n) for n in node[1])

