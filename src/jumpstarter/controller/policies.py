"""Access policies on the controller: saved, looked up and deleted here, with waiting leases
judged again at once (mixed into the `Coordinator`; the rules themselves are in `leasing`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from jumpstarter.controller import leasing
from jumpstarter.controller.model import Policy
from jumpstarter.controller.store.base import Store
from jumpstarter.errors import AlreadyExistsError, ArgumentError, NotFoundError

log = logging.getLogger("jumpstarter.controller")


class AccessPolicies:
    """Create, replace, get and delete access policies."""

    # supplied by the Coordinator
    store: Store
    _reschedule: Callable[[], None]

    def put_policy(self, policy: Policy, replace: bool = False) -> Policy:
        """Create (or with `replace`, create or replace) an access policy; waiting leases are
        judged by it at once."""
        problem = leasing.policy_problem(policy)
        if problem is not None:
            raise ArgumentError(f"policy {policy.namespace}/{policy.name}: {problem}")
        if not replace and self.get_policy(policy.namespace, policy.name, missing_ok=True) is not None:
            raise AlreadyExistsError(f"policy {policy.namespace}/{policy.name} already exists")
        self.store.put_policy(policy)
        log.info("access policy %s/%s saved", policy.namespace, policy.name)
        self._reschedule()
        return policy

    def get_policy(self, namespace: str, name: str, missing_ok: bool = False) -> Policy | None:
        """An access policy; NotFoundError (or None with `missing_ok`) when there is none."""
        for policy in self.store.list_policies(namespace):
            if policy.name == name:
                return policy
        if missing_ok:
            return None
        raise NotFoundError(f"policy {namespace}/{name} not found")

    def delete_policy(self, namespace: str, name: str) -> Policy:
        """Delete an access policy; waiting leases are judged without it at once."""
        policy = self.get_policy(namespace, name)
        assert policy is not None
        self.store.delete_policy(namespace, name)
        log.info("access policy %s/%s deleted", namespace, name)
        self._reschedule()
        return policy
