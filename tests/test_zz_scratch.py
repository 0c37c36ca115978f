import io, ftplib, socket, ssl, time, os, logging, json
import pytest
pytestmark = pytest.mark.django_db(transaction=True)

def test_serve(cast, gateway):
    json.dump({"e": gateway.explicit_port, "i": gateway.implicit_port, "u": cast.partner.username, "p": cast.partner.password, "home": cast.partner.user.home_dir}, open("/tmp/scratch/info.json","w"))
    deadline = time.time() + 900
    while time.time() < deadline and not os.path.exists("/tmp/scratch/stop"):
        time.sleep(0.5)
