"""Salesforce answered in-process, in the shapes of /work/shared/design/salesforce-shapes.md.

``FakeOrg`` holds a few tables and answers SOQL by evaluating it: it selects exactly the fields asked
for (``attributes`` on every record and every nested parent, ``null`` for an empty lookup), filters by
the WHERE clause, pages by 2,000 with ``nextRecordsUrl``, and refuses what Salesforce refuses (an
unknown field, a field selected twice, a semi-join combined with OR, more than two semi-joins). So a
test checks what a query really selects, not what the code hoped it would.

It reads only the SOQL subset repsend writes: ``SELECT f, ... FROM Obj [WHERE ...]`` (or ``SELECT COUNT()``)
with AND, OR, parentheses, ``=``/``!=``/``>=``/``<=``/``>``/``<`` against true, false, null, dates, datetimes
and quoted strings (text compared case-insensitively, as SOQL does), ``field [NOT] IN ('a', 'b')``,
``field [NOT] IN (SELECT ...)``, and parent-to-child subqueries in the field list (``(SELECT f FROM ObjectPerms
WHERE ...)``, answered as ``{"totalSize", "done", "records"}``, or ``null`` when there are none).

Who the API user is and what it may see: the org has one (``api_user_id``, by default an integration user
whose profile has "View All Data"); the SOAP login and the REST API's root (``GET /services/data/vXX.X/``,
whose ``identity`` URL ends in the user's Id) name it, and ``permission_set`` gives it more. An object the
user may not query (``hidden``: PermissionSetAssignment without "View Setup and Configuration", Lead
without Read) is refused with INVALID_TYPE wherever a query names it, as Salesforce does.

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
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import requests
import responses

API = "64.0"  # repsend's default REST API version
SOAP_API = "64.0"  # the username/password login's: the last version with SOAP login(), whatever the REST one
INSTANCE = "acme.my.salesforce.com"
ORG = "00D5g000004XYZ"
SESSION = "00D5g000004XYZ!AQ0AQFAKESESSION"
# The API user a FakeOrg logs in as unless told otherwise.
API_USERNAME = "integration@acme.example"
API_USER_ID = "0055g00000IntgUAAG"

SCHEMA: dict[str, tuple[str, ...]] = {
    "User": ("Id", "Name", "FirstName", "LastName", "Email", "IsActive", "Title", "Phone", "Signature"),
    "Account": ("Id", "Name", "Industry", "OwnerId"),
    "Contact": (
        "Id", "FirstName", "LastName", "Email", "HasOptedOutOfEmail", "IsEmailBounced", "LastActivityDate",
        "CreatedDate", "AccountId", "OwnerId", "Title", "MailingCountry", "Department", "Region__c",
    ),
    "Opportunity": (
        "Id", "Name", "AccountId", "ContactId", "IsClosed", "IsWon", "StageName", "CloseDate", "OwnerId",
        "LastModifiedDate", "CreatedDate",
    ),
    "OpportunityContactRole": ("Id", "OpportunityId", "ContactId", "Role", "IsPrimary"),
    "Lead": (
        "Id", "FirstName", "LastName", "Company", "Email", "HasOptedOutOfEmail", "IsConverted", "ConvertedContactId",
        "OwnerId",
    ),
    # The setup objects of who may see what (Object Reference: Profile, PermissionSet, PermissionSetAssignment,
    # ObjectPermissions), each with the few fields a test needs.
    "Profile": ("Id", "Name"),
    "PermissionSet": (
        "Id", "Name", "Label", "Type", "IsOwnedByProfile", "ProfileId", "PermissionsViewAllData",
        "HasActivationRequired",
    ),
    "PermissionSetAssignment": ("Id", "AssigneeId", "PermissionSetId", "PermissionSetGroupId"),
    "ObjectPermissions": (
        "Id", "ParentId", "SobjectType", "PermissionsRead", "PermissionsViewAllRecords", "PermissionsModifyAllRecords",
    ),
}  # fmt: skip
SCHEMA["User"] = (*SCHEMA["User"], "Username")
# What repsend writes back: a completed email Task per sent mail (WhoId: a Contact or a Lead).
SCHEMA["Task"] = ("Id", "WhoId", "OwnerId", "Subject", "Description", "ActivityDate", "Status", "TaskSubtype",
                  "CreatedDate")
# Relationship name -> the object it points at, through the field "<name>Id".
RELATIONS: dict[str, dict[str, str]] = {
    "User": {},
    "Account": {"Owner": "User"},
    "Contact": {"Account": "Account", "Owner": "User"},
    "Opportunity": {"Account": "Account", "Contact": "Contact", "Owner": "User"},
    "OpportunityContactRole": {"Opportunity": "Opportunity", "Contact": "Contact"},
    "Lead": {"Owner": "User", "ConvertedContact": "Contact"},
    "Profile": {},
    "PermissionSet": {"Profile": "Profile"},
    "PermissionSetAssignment": {"Assignee": "User", "PermissionSet": "PermissionSet"},
    "ObjectPermissions": {"Parent": "PermissionSet"},
    "Task": {"Owner": "User"},
}
# Child relationship name -> (the child object, its field that points at the parent).
CHILDREN: dict[str, dict[str, tuple[str, str]]] = {
    "Opportunity": {"OpportunityContactRoles": ("OpportunityContactRole", "OpportunityId")},
    "PermissionSet": {
        "ObjectPerms": ("ObjectPermissions", "ParentId"),
        "Assignments": ("PermissionSetAssignment", "PermissionSetId"),
    },
}
PREFIX = {
    "User": "005", "Account": "001", "Contact": "003", "Opportunity": "006", "OpportunityContactRole": "00K",
    "Lead": "00Q", "Profile": "00e", "PermissionSet": "0PS", "PermissionSetAssignment": "0Pa",
    "ObjectPermissions": "110", "Task": "00T",
}  # fmt: skip


def sfid(sobject: str, n: int) -> str:
    """An 18-character ID of the object's key prefix (the checksum part is not a real one)."""
    return f"{PREFIX[sobject]}5g{n:010d}AAA"


def login_ok(instance: str = INSTANCE, version: str = SOAP_API, user_id: str = API_USER_ID) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns="urn:partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>https://{instance}/services/Soap/m/{version}/{ORG}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
        f"<serverUrl>https://{instance}/services/Soap/u/{version}/{ORG}</serverUrl>"
        f"<sessionId>{SESSION}</sessionId><userId>{user_id}</userId>"
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

# The OAuth 2.0 token endpoint's refusals (400, JSON), as Salesforce words them.
INVALID_CLIENT = (400, {"error": "invalid_client", "error_description": "invalid client credentials"})
INVALID_GRANT = (400, {"error": "invalid_grant", "error_description": "user hasn't approved this consumer"})
NO_RUN_AS_USER = (400, {"error": "invalid_grant", "error_description": "no client credentials user enabled"})


def token_ok(n: int, instance: str = INSTANCE, user_id: str = API_USER_ID) -> dict[str, str]:
    """A token endpoint's success: a new access token each time (the n-th), the instance, the identity URL."""
    return {
        "access_token": f"{ORG}!AQ0AQOAuthAccessToken{n:04d}",
        "instance_url": f"https://{instance}",
        "id": f"https://login.salesforce.com/id/{ORG}/{user_id}",
        "token_type": "Bearer",
        "issued_at": str(1765000000000 + n),
        "signature": base64.b64encode(f"signature {n}".encode()).decode(),
    }


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
        self,
        instance: str = INSTANCE,
        version: str = API,
        null_semantics: NullSemantics = "sql",
        api_user: str | None = API_USERNAME,
        view_all_data: bool = True,
    ) -> None:
        """``api_user``: the Username of the integration user the org logs in as, whose profile has "View All
        Data" (``view_all_data``) or only Read on the objects repsend reads; None: no such user, a test picks
        one (``set_api_user``)."""
        self.instance, self.version, self.null_semantics = instance, version, null_semantics
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in SCHEMA}
        # Rows the org came with, left out of the numbering of the rows a test adds.
        self._seeded: dict[str, int] = dict.fromkeys(SCHEMA, 0)
        self._seeding = False
        self.api_user_id = ""
        self.profile_set: dict[str, Any] | None = None  # the API user's profile's own permission set
        # Objects the API user may not query: INVALID_TYPE wherever a query names them.
        self.hidden: set[str] = set()
        # The identity URL the REST API's root lists (None: left out, as a proxy or a changed API might).
        self.identity: str | None = None
        self.queries: list[str] = []
        self.token_requests: list[requests.PreparedRequest] = []
        self.calls = 0
        # The org's daily API request allowance as its limits resource reports it.
        self.api_requests_max = 15000
        self.api_requests_used = 0
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
        # composite/sobjects: every call as it came, (method, records), and a test's rule for records to
        # refuse (it returns (statusCode, message) for one Salesforce would refuse, None otherwise).
        self.writes: list[tuple[str, list[dict[str, Any]]]] = []
        self.refuse: Callable[[str, dict[str, Any]], tuple[str, str] | None] | None = None
        self._cursors: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        self._serial = itertools.count(1)
        if api_user is not None:
            user = self.add(
                "User", Id=API_USER_ID, Username=api_user, Name="Integration User", FirstName="Integration",
                LastName="User", Email=api_user, IsActive=True,
            )  # fmt: skip
            self._seeded["User"] += 1  # its Id is its own already
            self.set_api_user(user["Id"], view_all_data=view_all_data)

    # -- data --------------------------------------------------------------------------------------

    def add(self, sobject: str, **fields: Any) -> dict[str, Any]:
        unknown = set(fields) - set(SCHEMA[sobject])
        assert not unknown, f"{sobject} has no {unknown}"
        row = dict.fromkeys(SCHEMA[sobject])
        row.update(fields)
        if not row["Id"] and self._seeding:  # a row the org came with: an Id of its own kind, no test's
            self._seeded[sobject] += 1
            row["Id"] = f"{PREFIX[sobject]}5gS{self._seeded[sobject]:09d}AAA"
        elif not row["Id"]:
            row["Id"] = sfid(sobject, len(self.tables[sobject]) + 1 - self._seeded[sobject])
        assert row["Id"] not in self.tables[sobject], f"{sobject} {row['Id']} twice"
        self.tables[sobject][row["Id"]] = row
        return row

    def set_api_user(self, user_id: str, username: str | None = None, view_all_data: bool = True) -> None:
        """Log in as this User row (given ``username`` as its Username), with a profile of its own: one with
        "View All Data" (System Administrator), or one that only reads Contact, Opportunity and Lead."""
        user = self.tables["User"][user_id]
        if username is not None:
            user["Username"] = username
        self.api_user_id = user_id
        self._seeding = True  # the profile comes with the user: not a test's rows
        self.profile_set = self.permission_set(
            profile="System Administrator" if view_all_data else "Standard User",
            view_all_data=view_all_data,
            read=() if view_all_data else ("Contact", "Opportunity", "Lead", "Account"),
        )
        self._seeding = False

    def permission_set(
        self,
        label: str = "Repsend Integration",
        *,
        profile: str | None = None,
        view_all_data: bool = False,
        view_all: tuple[str, ...] = (),
        read: tuple[str, ...] = (),
        session_based: bool = False,
        group: bool = False,
        assignee: str | None = None,
    ) -> dict[str, Any]:
        """A permission set assigned to the API user (or ``assignee``): the own permission set of a profile
        named ``profile`` (IsOwnedByProfile: Salesforce keeps every profile's permissions in one, and lists
        its assignment with the others), the aggregate permission set of a permission set group (``group``:
        the group's assignment points at it, muting applied), else one of its own (Type Regular, or Session
        when ``session_based``). ``view_all``: objects it has View All (and Read) on; ``read``: objects it
        reads only."""
        if profile is not None:
            profile_row = self.add("Profile", Name=profile)
            number = len(self.tables["PermissionSet"]) + 1
            name = f"X00ex00000018ozh_128_09_04_12_{number}"  # what a profile's permission set is named
            fields: dict[str, Any] = dict(Name=name, Label=name, Type="Profile", IsOwnedByProfile=True,
                                          ProfileId=profile_row["Id"])  # fmt: skip
        else:
            kind = "Group" if group else "Session" if session_based else "Regular"
            fields = dict(Name=label.replace(" ", "_"), Label=label, Type=kind, IsOwnedByProfile=False)
        ps = self.add("PermissionSet", PermissionsViewAllData=view_all_data, HasActivationRequired=session_based,
                      **fields)  # fmt: skip
        for sobject in (*view_all, *read):
            self.add("ObjectPermissions", ParentId=ps["Id"], SobjectType=sobject, PermissionsRead=True,
                     PermissionsViewAllRecords=sobject in view_all, PermissionsModifyAllRecords=False)  # fmt: skip
        group_id = f"0PG5g{len(self.tables['PermissionSet']):010d}AAA" if group else None
        self.add("PermissionSetAssignment", AssigneeId=assignee or self.api_user_id, PermissionSetId=ps["Id"],
                 PermissionSetGroupId=group_id)  # fmt: skip
        return ps

    def forget(self) -> None:
        """Drop what past requests left (cursors, jobs, the logs), keeping the data: a fresh session."""
        self.queries.clear()
        self.answered.clear()
        self.sizes.clear()
        self._cursors.clear()
        self.jobs.clear()
        self.calls = 0

    # -- HTTP --------------------------------------------------------------------------------------

    def install(
        self, rsps: responses.RequestsMock, login_domain: str | None = "login", oauth_host: str | None = None
    ) -> None:
        """Answer queries; the SOAP login at ``{login_domain}.salesforce.com`` unless None; and the OAuth 2.0
        token endpoint at ``https://{oauth_host}/services/oauth2/token`` if given (the My Domain)."""
        root = re.escape(f"https://{self.instance}/services/data/v{self.version}/")
        rsps.add_callback(responses.GET, re.compile(root + "$"), callback=self._resources)
        rsps.add_callback(responses.GET, re.compile(root + "query/.*"), callback=self._answer)
        rsps.add_callback(responses.GET, re.compile(root + "limits/$"), callback=self._limits)
        for method in (responses.POST, responses.PATCH):
            rsps.add_callback(method, re.compile(root + "composite/sobjects$"), callback=self._collection)
        jobs = re.compile(re.escape(f"https://{self.instance}/services/data/v{self.version}/jobs/query") + ".*")
        rsps.add_callback(responses.POST, jobs, callback=self._bulk)
        rsps.add_callback(responses.GET, jobs, callback=self._bulk)
        if login_domain is not None:
            rsps.add(
                responses.POST,
                f"https://{login_domain}.salesforce.com/services/Soap/u/{SOAP_API}",
                body=login_ok(self.instance, SOAP_API, self.api_user_id),
                content_type="text/xml",
            )
        if oauth_host is not None:
            rsps.add_callback(responses.POST, f"https://{oauth_host}/services/oauth2/token", callback=self._token)

    def _token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str] | Exception:
        """POST /services/oauth2/token: a refusal a test queued (``failures``, by "oauth2/token"), or a new
        access token. The forms posted are kept (``token_requests``), for a test to check the grant."""
        failed = self._failure(request)
        if failed is not None:
            return failed
        self.token_requests.append(request)
        return self._json(200, token_ok(len(self.token_requests), self.instance, self.api_user_id))

    def _resources(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str] | Exception:
        """GET /services/data/vXX.X/: the resources of the version ("Resources by Version" in the REST API
        Developer Guide, a few of them here), the identity URL of the session's user among them."""
        self.calls += 1
        failed = self._failure(request)
        if failed is not None:
            return failed
        self.answered.append(("identity", ""))
        base = f"/services/data/v{self.version}"
        body = {name: f"{base}/{name}" for name in ("tooling", "metadata", "chatter", "query", "queryAll")}
        identity = self.identity if self.identity is not None else f"https://{self.instance}/id/{ORG}/{self.api_user_id}"
        if identity:
            body["identity"] = identity
        body.update({name: f"{base}/{name}" for name in ("composite", "sobjects", "search", "limits")})
        return self._json(200, body)

    def _limits(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str] | Exception:
        """GET /services/data/vXX.X/limits/: each limit's Max and Remaining ("Limits" in the REST API
        Developer Guide; two of its many entries here). Salesforce counts this call too."""
        self.calls += 1
        failed = self._failure(request)
        if failed is not None:
            return failed
        self.api_requests_used += 1
        self.answered.append(("limits", ""))
        remaining = self.api_requests_max - self.api_requests_used
        return self._json(200, {
            "DailyApiRequests": {"Max": self.api_requests_max, "Remaining": remaining},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
        })

    def _collection(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str] | Exception:
        """POST (create) or PATCH (update) composite/sobjects, the sObject Collections resource: at most 200
        records, each with ``attributes.type``; the answer is one {id, success, errors} per record, in order
        (allOrNone false: a refused record does not stop the others). Refused as Salesforce refuses: a WhoId
        or OwnerId that is no record, an update of a record that is not there or of a converted lead, a field
        the object lacks, TaskSubtype on an update; and whatever ``refuse`` says."""
        self.calls += 1
        failed = self._failure(request)
        if failed is not None:
            return failed
        body = json.loads(request.body or "{}")
        records = body.get("records") or []
        assert body.get("allOrNone") is False, body.get("allOrNone")
        if len(records) > 200:
            return self._json(400, [{"errorCode": "EXCEEDED_ID_LIMIT", "message": "(fake) more than 200 records"}])
        method = request.method or ""
        self.writes.append((method, records))
        self.answered.append(("write-" + method.lower(), ""))
        return self._json(200, [self._write_one(method, dict(record)) for record in records])

    def _write_one(self, method: str, record: dict[str, Any]) -> dict[str, Any]:
        def refused(code: str, message: str, fields: Sequence[str] = ()) -> dict[str, Any]:
            return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": list(fields)}]}

        sobject = (record.pop("attributes", None) or {}).get("type")
        if sobject not in SCHEMA:
            return refused("INVALID_TYPE", f"(fake) no such object {sobject!r}")
        record_id = record.pop("id", None)
        unknown = [name for name in record if name not in SCHEMA[sobject] or name == "Id"]
        if unknown:
            return refused("INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}", unknown)
        said = self.refuse(method, {"type": sobject, "id": record_id, **record}) if self.refuse else None
        if said is not None:
            return refused(*said)
        if method == "POST":
            if record_id is not None:
                return refused("INVALID_FIELD", "(fake) a record to create has no id")
            for name, target in (("WhoId", ("Contact", "Lead")), ("OwnerId", ("User",))):
                if name in record and not any(self._find(t, record[name]) for t in target):
                    return refused("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
            row = self.add(sobject, **record)
            return {"id": row["Id"], "success": True, "errors": []}
        row = self._find(sobject, record_id or "")
        if row is None:
            return refused("ENTITY_IS_DELETED", "entity is deleted")
        if "TaskSubtype" in record:
            return refused("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: TaskSubtype",
                           ["TaskSubtype"])
        if sobject == "Lead" and row.get("IsConverted"):
            return refused("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
        row.update(record)
        return {"id": row["Id"], "success": True, "errors": []}

    def _find(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A row by its Id, 15 or 18 characters, as Salesforce takes either."""
        key = (record_id or "")[:15]
        return next((row for sid, row in self.tables[sobject].items() if sid[:15] == key), None) if key else None

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
            if select.children:  # nor parent-to-child subqueries; the wording is not known here either
                raise SoqlError("MALFORMED_QUERY", "(fake) Bulk API 2.0 does not support relationship subqueries")
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
        self._queryable(select.sobject, soql)
        semi = _semi_joins(select.where)
        if len(semi) > 2:
            raise SoqlError("MALFORMED_QUERY", "Maximum 2 semi join sub-selects are allowed")
        if _semi_under_or(select.where):
            raise SoqlError("MALFORMED_QUERY", "Semi join sub-selects are not allowed with the 'OR' operator")
        test = self._predicate(select.sobject, select.where, soql)
        rows = [row for row in self.tables[select.sobject].values() if test(row)]
        return rows if select.limit is None else rows[: select.limit]

    def _queryable(self, sobject: str, soql: str) -> None:
        """INVALID_TYPE for an object the API user may not query, worded as Salesforce words it."""
        if sobject in self.hidden:
            raise SoqlError(
                "INVALID_TYPE",
                f"\n{soql[:60]}\n^\nERROR at Row:1:Column:8\nsObject type '{sobject}' is not supported. If you are "
                "attempting to use a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )

    def _records(self, select: _Select, rows: list[dict[str, Any]], soql: str) -> list[dict[str, Any]]:
        paths = self._resolve_fields(select, soql)
        children = [self._child(select.sobject, sub, soql) for sub in select.children]
        return [self._project(select.sobject, row, paths, children) for row in rows]

    def _resolve_fields(self, select: _Select, soql: str) -> list[list[str]]:
        paths, seen = [], set()
        for name in [sub.sobject for sub in select.children]:
            if name.lower() in seen:
                raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {name}")
            seen.add(name.lower())
        for name in select.fields:
            path = self._resolve(select.sobject, name, soql)
            key = ".".join(path).lower()
            if key in seen:
                raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {name}")
            seen.add(key)
            paths.append(path)
        return paths

    def _child(self, sobject: str, sub: _Select, soql: str) -> _ChildQuery:
        """A parent-to-child subquery: its relationship, the child object's fields and filter."""
        name = next((r for r in CHILDREN.get(sobject, {}) if r.lower() == sub.sobject.lower()), None)
        if name is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"\n{soql[:60]}\n^\nERROR at Row:1:Column:8\nDidn't understand relationship '{sub.sobject}' in FROM "
                "part of query call. If you are attempting to use a custom relationship, be sure to append the "
                "'__r' after the custom relationship name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            )
        target, parent_field = CHILDREN[sobject][name]
        self._queryable(target, soql)
        if sub.children or _semi_joins(sub.where):
            raise SoqlError("MALFORMED_QUERY", "(fake) a subquery nests no other and no semi-join here")
        child = _Select(sub.fields, target, sub.where)
        return _ChildQuery(name, target, parent_field, self._resolve_fields(child, soql),
                           self._predicate(target, sub.where, soql))  # fmt: skip

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

    def _project(
        self, sobject: str, row: dict[str, Any], paths: list[list[str]], children: Sequence[_ChildQuery] = ()
    ) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": self._attributes(sobject, row["Id"])}
        for path in paths:
            self._put(sobject, row, path, record)
        for child in children:
            rows = [r for r in self.tables[child.target].values()
                    if r[child.parent_field] == row["Id"] and child.test(r)]  # fmt: skip
            records = [self._project(child.target, r, child.paths) for r in rows]
            # none: null, not an empty list; some: a query result of its own (all of it: a few rows here)
            record[child.name] = {"totalSize": len(records), "done": True, "records": records} if records else None
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
        if kind in ("inlist", "notinlist"):
            literals, op = [_literal(t) for t in node[2]], "=" if kind == "inlist" else "!="
            combine = any if kind == "inlist" else all
            return lambda row: self._get(sobject, row, path) is not None and combine(
                _compare(self._get(sobject, row, path), op, literal) for literal in literals
            )
        sub: _Select = node[2]
        self._queryable(sub.sobject, soql)
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
    if isinstance(literal, str) and isinstance(value, str):
        value, literal = value.casefold(), literal.casefold()  # SOQL compares text case-insensitively
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
        return re.sub(r"\\(.)", r"\1", token[1:-1])  # \' is a quote, \\ a backslash
    if "T" in token:
        return datetime.fromisoformat(token)
    return date.fromisoformat(token)


class _Select:
    def __init__(
        self, fields: list[str], sobject: str, where: Any, count: bool = False, children: list[_Select] | None = None
    ) -> None:
        self.fields, self.sobject, self.where, self.count = fields, sobject, where, count
        self.children = children or []  # parent-to-child subqueries; their sobject is the relationship name
        self.limit: int | None = None


class _ChildQuery:
    """A parent-to-child subquery, resolved: the relationship, the child rows' object, fields and filter."""

    def __init__(
        self, name: str, target: str, parent_field: str, paths: list[list[str]], test: Callable[[dict[str, Any]], bool]
    ) -> None:
        self.name, self.target, self.parent_field, self.paths, self.test = name, target, parent_field, paths, test


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

    def select(self, child: bool = False) -> _Select:
        """A SELECT; ``child``: a parent-to-child subquery, FROM a relationship name the org resolves."""
        self.take("SELECT")
        count = self.peek("COUNT") and self.tokens[self.at + 1 : self.at + 3] == ["(", ")"]
        fields: list[str] = []
        children: list[_Select] = []
        if count:
            self.at += 3
        else:
            while True:
                if self.peek("(") and not child:
                    self.take("(")
                    children.append(self.select(child=True))
                    self.take(")")
                else:
                    fields.append(self.take())
                if not self.peek(","):
                    break
                self.take(",")
        self.take("FROM")
        sobject = self.take()
        if sobject not in SCHEMA and not child:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{sobject}' is not supported. If you are attempting to use a custom object, be sure "
                "to append the '__c' after the entity name. Please reference your WSDL or the describe call for "
                "the appropriate names.",
            )
        where = None
        if self.peek("WHERE"):
            self.take("WHERE")
            where = self.disjunction()
        select = _Select(fields, sobject, where, count, children)
        if self.peek("LIMIT") and not child:
            self.take("LIMIT")
            select.limit = int(self.take())
        return select

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
            if not self.peek("SELECT"):  # a list of values: IN ('Contact', 'Opportunity')
                values = [self.take()]
                while self.peek(","):
                    self.take(",")
                    values.append(self.take())
                self.take(")")
                return (kind + "list", name, values)
            sub = self.select()
            self.take(")")
            return (kind, name, sub)
        op = self.take()
        if op not in ("=", "!=", ">=", "<=", ">", "<"):
            raise SoqlError("MALFORMED_QUERY", f"unexpected operator {op}")
        return ("cmp", name, op, self.take())


def _semi_joins(node: Any) -> list[Any]:
    if node is None or node[0] in ("cmp", "inlist", "notinlist"):
        return []
    if node[0] in ("in", "notin"):
        return [node]
    return [s for n in node[1] for s in _semi_joins(n)]


def _semi_under_or(node: Any) -> bool:
    if node is None or node[0] in ("cmp", "in", "notin", "inlist", "notinlist"):
        return False
    if node[0] == "or" and _semi_joins(node):
        return True
    return any(_semi_under_or(n) for n in node[1])

