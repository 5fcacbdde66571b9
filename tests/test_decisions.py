"""The pure decisions and folds of users, products and orders: no database, no broker, no fixtures."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from events import orders, products, users
from events.base import advance, fold
from events.errors import Conflict, Forbidden, Invalid, NotFound
from events.users import SYSTEM, Actor

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def new_user(role="buyer") -> users.User:
    return advance(users.evolve, None, users.register(uuid.uuid4(), "a@example.com", "Ada", role, T0), T0)


# Users

def test_registering_folds_into_an_active_user_at_version_one():
    user = new_user("seller")
    assert (user.role, user.active, user.version, user.created_at, user.updated_at) == ("seller", True, 1, T0, T0)


def test_a_role_change_records_the_previous_role_and_the_same_role_records_nothing():
    user = new_user()
    [changed] = users.change_role(user, "seller", other_admins=0)
    assert (changed.role, changed.previous_role) == ("seller", "buyer")
    assert users.change_role(user, "buyer", other_admins=0) == []
    after = advance(users.evolve, user, [changed], T1)
    assert (after.role, after.version, after.updated_at) == ("seller", 2, T1)


def test_deactivating_twice_is_a_conflict_and_a_missing_user_is_not_found():
    user = advance(users.evolve, new_user(), users.deactivate(new_user(), other_admins=0), T1)
    assert user.active is False
    with pytest.raises(Conflict):
        users.deactivate(user, other_admins=0)
    with pytest.raises(NotFound):
        users.deactivate(None, other_admins=0)
    with pytest.raises(NotFound):
        users.change_role(None, "admin", other_admins=0)


def test_the_last_active_admin_is_neither_demoted_nor_deactivated():
    admin = new_user("admin")
    for refused in (lambda: users.change_role(admin, "buyer", other_admins=0),
                    lambda: users.deactivate(admin, other_admins=0)):
        with pytest.raises(Conflict) as conflict:
            refused()
        assert conflict.value.extra["reason"] == "last_admin"
    assert users.change_role(admin, "seller", other_admins=1) and users.deactivate(admin, other_admins=1)
    assert users.change_role(new_user("seller"), "buyer", other_admins=0)  # not an admin: no rule


def test_a_deactivated_user_is_reactivated_once_and_promotion_makes_an_active_admin():
    gone = advance(users.evolve, new_user(), users.deactivate(new_user(), other_admins=0), T1)
    back = advance(users.evolve, gone, users.reactivate(gone), T1)
    assert back.active and back.version == 3
    with pytest.raises(Conflict):
        users.reactivate(back)
    promoted = advance(users.evolve, gone, users.promote(gone), T1)
    assert users.is_active_admin(promoted)
    assert users.promote(advance(users.evolve, None, users.register(uuid.uuid4(), "a@example.com", "Ada", "admin",
                                                                    T0), T0)) == []


@pytest.mark.parametrize("typed", ["Ada@Example.COM", "ａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ", "a\u200bda@example.com\ufeff",
                                   " ada@exam\u00adple.com ", "ADA@EXAMPLE.COM\u2060"])
def test_every_spelling_of_an_email_has_one_canonical_form(typed):
    assert users.canonical_email(typed) == "ada@example.com"


def test_an_email_keeps_its_letters_in_one_normal_form():
    assert users.canonical_email("Jose\u0301@example.com") == users.canonical_email("jos\u00e9@example.com") \
        == "jos\u00e9@example.com"
    assert users.canonical_email("STRASSE@example.com") == users.canonical_email("straße@example.com")


@pytest.mark.parametrize("typed", ["notanemail", "a@b", "a b@example.com", "@example.com", "a@@example.com",
                                   "\u200b@example.com", "a\x01@example.com", "a" * 250 + "@example.com"])
def test_what_is_no_email_address_is_invalid(typed):
    with pytest.raises(Invalid) as refused:
        users.canonical_email(typed)
    assert refused.value.field == "email"


def test_a_name_must_show_something_and_loses_its_surrounding_spaces():
    assert advance(users.evolve, None, users.register(uuid.uuid4(), "a@example.com", " Ada ", "buyer", T0),
                   T0).name == "Ada"
    for blank in ("", "  ", "\u200b\u200d", "\u3000"):
        with pytest.raises(Invalid):
            users.register(uuid.uuid4(), "a@example.com", blank, "buyer", T0)


def test_an_event_of_another_kind_only_moves_the_version():
    user = new_user()
    other = products.ProductDiscontinued(product_id=uuid.uuid4())
    moved = users.evolve(user, other, 2, T1)
    assert (moved.version, moved.role, moved.active) == (2, user.role, True)
    assert users.evolve(None, other, 1, T0) is None


# Products

SELLER = Actor(uuid.uuid4(), "seller")
OTHER_SELLER = Actor(uuid.uuid4(), "seller")
ADMIN = Actor(uuid.uuid4(), "admin")
FIELDS = {"name": "Mug", "description": "", "price": Decimal("5.00"), "currency": "EUR", "stock": 10}


def new_product(**overrides) -> products.Product:
    return advance(products.evolve, None, products.create(uuid.uuid4(), SELLER.id, {**FIELDS, **overrides}, T0), T0)


def test_a_created_product_has_its_stock_on_hand_and_nothing_reserved():
    p = new_product(stock=7)
    assert (p.on_hand, p.reserved, p.stock, p.active, p.source, p.version) == (7, 0, 7, True, "manual", 1)


def test_an_update_records_only_the_fields_that_change():
    p = new_product()
    [e] = products.update(p, SELLER, {"name": "Mug", "price": Decimal("6.00")})
    assert e.price == Decimal("6.00") and e.name is products.UNSET
    assert products.update(p, SELLER, {"name": "Mug"}) == []
    assert advance(products.evolve, p, [e], T1).price == Decimal("6.00")


def test_only_the_owning_seller_or_an_admin_changes_a_product():
    p = new_product()
    with pytest.raises(Forbidden):
        products.update(p, OTHER_SELLER, {"name": "Cup"})
    with pytest.raises(Forbidden):
        products.restock(p, OTHER_SELLER, 1)
    assert products.discontinue(p, ADMIN)


def test_a_discontinued_product_is_not_found_for_changes_and_cannot_be_reserved():
    p = advance(products.evolve, new_product(), products.discontinue(new_product(), SELLER), T1)
    with pytest.raises(NotFound):
        products.update(p, SELLER, {"name": "Cup"})
    with pytest.raises(Conflict, match="discontinued"):
        products.reserve(p, p.id, uuid.uuid4(), 1)


def test_a_restock_must_be_positive_and_stay_within_the_limit():
    p = new_product(stock=products.MAX_STOCK - 1)
    with pytest.raises(Invalid):
        products.restock(p, SELLER, 0)
    with pytest.raises(Conflict) as refused:
        products.restock(p, SELLER, 2)
    assert refused.value.extra["limit"] == products.MAX_STOCK
    assert advance(products.evolve, p, products.restock(p, SELLER, 1), T1).on_hand == products.MAX_STOCK


def an_upload(product: products.Product, picture: str) -> products.ImageAdded:
    size = products.ImageFile(key=f"{picture}.webp", sha256=picture, bytes=10, width=4, height=4,
                              content_type="image/webp")
    return products.ImageAdded(product_id=product.id, image_id=uuid.uuid4(), sha256=picture, bytes=10,
                               width=4, height=4, thumbnail=size, display=size)


def test_an_image_is_added_once_in_order_and_removed_by_its_id():
    p = new_product()
    first, second = an_upload(p, "a" * 64), an_upload(p, "b" * 64)
    with pytest.raises(Forbidden):
        products.add_image(p, OTHER_SELLER, first)
    p = advance(products.evolve, p, products.add_image(p, SELLER, first), T1)
    p = advance(products.evolve, p, products.add_image(p, ADMIN, second), T1)
    assert [i.id for i in p.images] == [first.image_id, second.image_id]
    with pytest.raises(Conflict) as refused:
        products.add_image(p, SELLER, an_upload(p, "a" * 64))
    assert refused.value.extra["field"] == "file" and refused.value.extra["image_id"] == str(first.image_id)
    [removed] = products.remove_image(p, SELLER, first.image_id)
    p = advance(products.evolve, p, [removed], T1)
    assert [i.id for i in p.images] == [second.image_id]
    with pytest.raises(NotFound):
        products.remove_image(p, SELLER, first.image_id)


def test_a_product_holds_at_most_the_image_limit():
    p = new_product()
    for n in range(products.MAX_IMAGES):
        p = advance(products.evolve, p, products.add_image(p, SELLER, an_upload(p, f"{n:064x}")), T1)
    with pytest.raises(Conflict) as refused:
        products.add_image(p, SELLER, an_upload(p, "f" * 64))
    assert refused.value.extra["limit"] == products.MAX_IMAGES
    [removed] = products.remove_image(p, SELLER, p.images[0].id)
    p = advance(products.evolve, p, [removed], T1)
    assert products.add_image(p, SELLER, an_upload(p, "f" * 64))


def test_a_reservation_beyond_what_is_available_is_refused_naming_what_is_left():
    p = new_product(stock=3)
    order_id = uuid.uuid4()
    p = advance(products.evolve, p, products.reserve(p, p.id, order_id, 2), T1)
    assert (p.on_hand, p.reserved, p.stock) == (3, 2, 1)
    with pytest.raises(Conflict) as refused:
        products.reserve(p, p.id, uuid.uuid4(), 2)
    assert refused.value.extra["available"] == 1
    released = advance(products.evolve, p, products.release(p, order_id, 2), T1)
    assert (released.on_hand, released.reserved, released.stock) == (3, 0, 3)


def test_a_scrape_that_says_nothing_new_records_nothing_and_spares_a_discontinued_product():
    run, url = uuid.uuid4(), "http://shop.example/p/1"
    values = {"name": "Mug", "description": "", "price": Decimal("5.00"), "currency": "EUR", "stock": 4,
              "sku": "M1", "image_url": None}
    [first] = products.scrape(None, uuid.uuid4(), "shop", url, run, values, T0)
    p = advance(products.evolve, None, [first], T0)
    assert (p.on_hand, p.seller_id, p.source) == (4, None, "shop")
    assert products.scrape(p, p.id, "shop", url, run, values, T1) == []
    assert products.scrape(p, p.id, "shop", url, run, {**values, "stock": 5}, T1)
    gone = advance(products.evolve, p, products.discontinue(p, ADMIN), T1)
    assert products.scrape(gone, p.id, "shop", url, run, {**values, "price": Decimal("1.00")}, T1) == []


def test_a_scraped_product_is_created_when_recorded_so_it_is_never_updated_before_it_was_created():
    values = {"name": "Mug", "description": "", "price": Decimal("5.00"), "currency": "EUR", "stock": 4,
              "sku": None, "image_url": None}
    [scraped] = products.scrape(None, uuid.uuid4(), "shop", "http://shop.example/p/1", uuid.uuid4(), values, T1)
    p = advance(products.evolve, None, [scraped], T0)  # recorded by a transaction that began before the scrape
    assert (p.created_at, p.updated_at) == (T0, T0)


# Orders

ADDRESS = orders.Address(name="A", line1="B", city="C", postal_code="1", country="GB")
BUYER = Actor(uuid.uuid4(), "buyer")


def catalog(*items: products.Product) -> dict:
    return {p.id: p for p in items}


def placed_order(*items: products.Product, quantity: int = 1) -> orders.Order:
    wanted = orders.merge([(p.id, quantity) for p in items])
    placed, _ = orders.place(uuid.uuid4(), BUYER.id, wanted, catalog(*items), ADDRESS, T0)
    return advance(orders.evolve, None, [placed], T0)


def test_repeated_products_merge_into_one_line_in_lock_order():
    a, b = uuid.uuid4(), uuid.uuid4()
    merged = orders.merge([(a, 2), (b, 1), (a, 3)])
    assert merged == {a: 5, b: 1} and list(merged) == sorted(merged, key=str)
    with pytest.raises(Invalid, match="at most 1000"):
        orders.merge([(a, 600), (a, 401)])


def test_an_order_takes_the_catalogs_prices_and_reserves_every_line():
    mug, pot = new_product(price=Decimal("2.50")), new_product(price=Decimal("10.00"))
    wanted = orders.merge([(mug.id, 2), (pot.id, 1)])
    placed, reservations = orders.place(uuid.uuid4(), BUYER.id, wanted, catalog(mug, pot), ADDRESS, T0)
    assert placed.total == Decimal("15.00") and placed.currency == "EUR"
    assert {ln.product_id: ln.line_total for ln in placed.lines} == {mug.id: Decimal("5.00"), pot.id: Decimal("10.00")}
    assert {pid: e.quantity for pid, [e] in reservations.items()} == {mug.id: 2, pot.id: 1}


def test_an_order_refuses_mixed_currencies_unknown_products_and_an_oversized_total():
    eur, usd = new_product(), new_product(currency="USD")
    with pytest.raises(Invalid, match="mix currencies"):
        orders.place(uuid.uuid4(), BUYER.id, orders.merge([(eur.id, 1), (usd.id, 1)]), catalog(eur, usd), ADDRESS, T0)
    missing = uuid.uuid4()
    with pytest.raises(Invalid) as refused:
        orders.place(uuid.uuid4(), BUYER.id, {missing: 1}, {}, ADDRESS, T0)
    assert refused.value.field == "items[0].product_id"
    dear = new_product(price=Decimal("9999999999.99"), stock=1000)
    with pytest.raises(Invalid, match="total may be at most"):
        orders.place(uuid.uuid4(), BUYER.id, {dear.id: 1000}, catalog(dear), ADDRESS, T0)
    with pytest.raises(Invalid, match="nothing to order"):
        orders.place(uuid.uuid4(), BUYER.id, {}, {}, ADDRESS, T0)


def test_the_lifecycle_moves_only_forward_and_each_step_names_the_current_status():
    order = placed_order(new_product())
    assert order.status == "pending"
    with pytest.raises(Conflict) as early:
        orders.ship(order, ADMIN)
    assert early.value.extra["current_status"] == "pending"
    paid = advance(orders.evolve, order, orders.pay(order, BUYER, "ref-1"), T1)
    assert (paid.status, paid.payment_reference, paid.version) == ("paid", "ref-1", 2)
    shipped = advance(orders.evolve, paid, orders.ship(paid, ADMIN), T1)
    delivered = advance(orders.evolve, shipped, orders.deliver(shipped, ADMIN), T1)
    assert delivered.status == "delivered"
    for decide in (lambda o: orders.cancel(o, ADMIN), lambda o: orders.pay(o, BUYER, "x")):
        with pytest.raises(Conflict):
            decide(delivered)


def test_only_the_buyer_pays_and_only_an_admin_or_the_seller_of_every_line_fulfils():
    order = placed_order(new_product())
    with pytest.raises(Forbidden):
        orders.pay(order, Actor(uuid.uuid4(), "buyer"), "x")
    paid = advance(orders.evolve, order, orders.pay(order, BUYER, "x"), T1)
    assert orders.ship(paid, SELLER) and orders.ship(paid, SYSTEM)
    with pytest.raises(Forbidden):
        orders.ship(paid, OTHER_SELLER)
    mixed = placed_order(new_product(), advance(products.evolve, None, products.create(
        uuid.uuid4(), OTHER_SELLER.id, FIELDS, T0), T0))
    mixed = advance(orders.evolve, mixed, orders.pay(mixed, BUYER, "x"), T1)
    with pytest.raises(Forbidden):
        orders.ship(mixed, SELLER)


def test_cancelling_a_paid_order_refunds_its_total_and_releases_its_stock():
    mug = new_product()
    order = placed_order(mug, quantity=3)
    paid = advance(orders.evolve, order, orders.pay(order, BUYER, "x"), T1)
    [cancelled] = orders.cancel(paid, BUYER, "changed my mind")
    assert cancelled.refund == paid.total and cancelled.reason == "changed my mind"
    move, quantities = orders.stock_moves(paid, [cancelled])
    assert move is products.release and quantities == {mug.id: 3}
    with pytest.raises(Forbidden):
        orders.cancel(paid, Actor(uuid.uuid4(), "buyer"))


def test_a_shipment_moves_the_stock_out_and_a_payment_moves_none():
    mug = new_product()
    order = placed_order(mug, quantity=2)
    paid = advance(orders.evolve, order, orders.pay(order, BUYER, "x"), T1)
    assert orders.stock_moves(order, orders.pay(order, BUYER, "x")) is None
    move, quantities = orders.stock_moves(paid, orders.ship(paid, ADMIN))
    assert move is products.ship and quantities == {mug.id: 2}


def test_an_overdue_pending_order_expires_and_gives_its_stock_back():
    order = placed_order(new_product())
    with pytest.raises(Conflict):
        orders.expire(order, T0 + timedelta(minutes=29), timedelta(minutes=30))
    [expired] = orders.expire(order, T0 + timedelta(minutes=30), timedelta(minutes=30))
    assert expired.deadline == T0 + timedelta(minutes=30)
    assert advance(orders.evolve, order, [expired], T1).status == "expired"
    assert orders.stock_moves(order, [expired])[0] is products.release


def test_an_order_is_visible_to_its_buyer_its_sellers_and_admins_only():
    order = placed_order(new_product())
    assert orders.viewers(order) == [f"buyer:{BUYER.id}", f"seller:{SELLER.id}"]
    assert all(orders.visible(order, a) for a in (BUYER, SELLER, ADMIN, SYSTEM))
    assert not any(orders.visible(order, a) for a in (OTHER_SELLER, Actor(uuid.uuid4(), "buyer")))
    # A seller who bought something sees it as its buyer; a buyer does not see by a seller's key.
    assert orders.keys(Actor(SELLER.id, "buyer")) == [f"buyer:{SELLER.id}"]
    assert orders.keys(ADMIN) is None
    assert not orders.visible(None, ADMIN)


def test_a_seller_of_some_lines_sees_those_lines_only():
    mine, theirs = new_product(), advance(products.evolve, None, products.create(
        uuid.uuid4(), OTHER_SELLER.id, FIELDS, T0), T0)
    mixed, whole = placed_order(mine, theirs), placed_order(mine)
    assert not orders.sees_whole(mixed, SELLER)
    assert [ln.product_id for ln in orders.lines_seen(mixed, SELLER)] == [mine.id]
    assert all(orders.sees_whole(mixed, a) for a in (BUYER, ADMIN, SYSTEM))
    assert orders.sees_whole(whole, SELLER)  # it ships this one


def test_a_fold_of_a_stream_equals_advancing_one_event_at_a_time():
    mug = new_product()
    order = placed_order(mug)
    history = [orders.pay(order, BUYER, "x")[0], orders.OrderShipped(order_id=order.id)]
    stepwise = order
    for e in history:
        stepwise = advance(orders.evolve, stepwise, [e], T1)
    assert fold(orders.evolve, [(e, v, T1) for v, e in enumerate(history, start=2)], order) == stepwise
