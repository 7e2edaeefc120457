"""The OpenAPI 3 description of the operators' REST API (served at /api/openapi.json)."""

from __future__ import annotations

from typing import Any

LINK_STATES = ("running", "pending", "crashing", "failed", "completed", "stopped", "unknown")


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref(schema))}


_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthenticated"},
    "403": {"$ref": "#/components/responses/Forbidden"},
}
_UNAVAILABLE = {"503": {"$ref": "#/components/responses/Unavailable"}}
_BAD_INPUT = {"400": {"$ref": "#/components/responses/BadInput"}}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json(_ref("Errors"))}


def openapi_document() -> dict[str, Any]:
    """The document, built fresh (callers may not share a mutable dict)."""
    node_body = {
        "required": True,
        "content": _json(
            {
                "type": "object",
                "required": ["url"],
                "properties": {
                    "url": {
                        "type": "string",
                        "format": "uri",
                        "example": "http://10.0.0.4:5984/",
                        "description": "the node's URL; credentials in it are used, never shown",
                    },
                    "timeoutSeconds": {
                        "type": "number",
                        "default": 60,
                        "maximum": 600,
                        "description": "how long to wait for the node to catch up",
                    },
                },
            }
        ),
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "NoteBook replication API",
            "version": "1.0.0",
            "description": (
                "Operators' API for the CouchDB replication mesh. Every route except this document "
                "needs `Authorization: Bearer <accessToken>` of an admin user: anonymous callers get "
                "401, other users 403. Errors have the GraphQL error shape."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {
            "/api/replication/status": {
                "get": {
                    "summary": "Health of every node and state of every replication link",
                    "operationId": "replicationStatus",
                    "responses": {"200": _answer("the status", "ReplicationStatus"), **_ERRORS},
                }
            },
            "/api/replication/setup": {
                "post": {
                    "summary": "Create the full mesh of replication jobs (idempotent)",
                    "operationId": "setupReplication",
                    "responses": {
                        "200": {
                            "description": "every job of the mesh exists",
                            "content": _json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "jobIds": {"type": "array", "items": {"type": "string"}},
                                        "nodes": {"type": "array", "items": {"type": "string"}},
                                    },
                                }
                            ),
                        },
                        **_ERRORS,
                        **_UNAVAILABLE,
                    },
                }
            },
            "/api/replication": {
                "delete": {
                    "summary": "Delete every replication job of this deployment",
                    "description": (
                        "On pouchdb-server (development) each node exits right after its jobs are "
                        "deleted and must be restarted by its supervisor; CouchDB 3 just stops them."
                    ),
                    "operationId": "teardownReplication",
                    "responses": {
                        "200": {
                            "description": "jobs deleted",
                            "content": _json(
                                {"type": "object", "properties": {"removedJobs": {"type": "integer"}}}
                            ),
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/replication/lag": {
                "post": {
                    "summary": "Measure replication lag with canary documents, then return the status",
                    "operationId": "measureReplicationLag",
                    "requestBody": {
                        "required": False,
                        "content": _json(
                            {
                                "type": "object",
                                "properties": {"timeoutSeconds": {"type": "number", "default": 10}},
                            }
                        ),
                    },
                    "responses": {
                        "200": _answer("the status with fresh lag figures", "ReplicationStatus"),
                        **_BAD_INPUT,
                        **_ERRORS,
                    },
                }
            },
            "/api/replication/nodes": {
                "post": {
                    "summary": "Add a node: databases, design documents, jobs both ways, catch-up",
                    "operationId": "addReplicationNode",
                    "requestBody": node_body,
                    "responses": {
                        "200": _answer("the node caught up", "NodeAdded"),
                        "202": _answer("jobs exist; the node is still catching up", "NodeAdded"),
                        **_BAD_INPUT,
                        **_ERRORS,
                        **_UNAVAILABLE,
                    },
                },
                "delete": {
                    "summary": "Remove a node from the mesh (its jobs and the jobs pulling from it)",
                    "operationId": "removeReplicationNode",
                    "parameters": [
                        {
                            "name": "url",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string"},
                            "description": 'the node\'s URL (or send {"url": ...} as the body)',
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "node removed",
                            "content": _json(
                                {
                                    "type": "object",
                                    "properties": {
                                        "removedJobs": {"type": "integer"},
                                        "nodes": {"type": "array", "items": {"type": "string"}},
                                    },
                                }
                            ),
                        },
                        **_BAD_INPUT,
                        **_ERRORS,
                        "404": _error_response("the node is not in the mesh"),
                        **_UNAVAILABLE,
                    },
                },
            },
            "/api/status": {
                "get": {
                    "summary": "The status page's data: replication status and GraphQL request counters",
                    "operationId": "operatorStatus",
                    "responses": {
                        "200": {
                            "description": "status with graphqlRequests, graphqlFailures, at (epoch seconds)",
                            "content": _json({"type": "object"}),
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3 document", "content": _json({})}},
                }
            },
        },
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "responses": {
                "Unauthenticated": _error_response("no or invalid access token"),
                "Forbidden": _error_response("the caller is not an admin"),
                "BadInput": _error_response("the request is malformed"),
                "Unavailable": _error_response("a database node failed or did not answer"),
            },
            "schemas": {
                "ClusterNode": {
                    "type": "object",
                    "required": ["url", "healthy", "active"],
                    "properties": {
                        "url": {"type": "string", "description": "without credentials"},
                        "healthy": {"type": "boolean"},
                        "active": {"type": "boolean", "description": "the node the app sends requests to"},
                        "version": {"type": "string", "nullable": True},
                        "latencyMs": {"type": "number", "nullable": True},
                    },
                },
                "ReplicationLink": {
                    "type": "object",
                    "required": ["source", "target", "database", "state"],
                    "properties": {
                        "source": {"type": "string"},
                        "target": {"type": "string"},
                        "database": {"type": "string"},
                        "state": {
                            "type": "string",
                            "enum": list(LINK_STATES),
                        },
                        "lastError": {"type": "string", "nullable": True},
                        "lagSeconds": {
                            "type": "number",
                            "nullable": True,
                            "description": "seconds the last canary took; null if not measured or lost",
                        },
                    },
                },
                "ReplicationStatus": {
                    "type": "object",
                    "required": ["nodes", "links", "healthy", "topology"],
                    "properties": {
                        "nodes": {"type": "array", "items": _ref("ClusterNode")},
                        "links": {"type": "array", "items": _ref("ReplicationLink")},
                        "healthy": {"type": "boolean"},
                        "topology": {
                            "type": "string",
                            "enum": ["mesh", "clustered"],
                            "description": "mesh: replication jobs between servers; clustered: the "
                            "nodes are doors to one clustered CouchDB (no links)",
                        },
                    },
                },
                "NodeAdded": {
                    "type": "object",
                    "properties": {
                        "url": {"type": "string"},
                        "jobIds": {"type": "array", "items": {"type": "string"}},
                        "caughtUp": {"type": "boolean"},
                        "seconds": {"type": "number"},
                    },
                },
                "Errors": {
                    "type": "object",
                    "properties": {
                        "errors": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "message": {"type": "string"},
                                    "extensions": {
                                        "type": "object",
                                        "properties": {"code": {"type": "string"}},
                                    },
                                },
                            },
                        }
                    },
                },
            },
        },
    }
