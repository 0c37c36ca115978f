import time, pytest
pytestmark = pytest.mark.django_db(transaction=True)
def test_a(transactional_db): pass
def test_b(cast): pass
def test_c(gateway): pass
def test_d(cast, gateway): pass
