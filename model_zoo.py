"""The model families this toolkit knows: adding a family is one package and one line here.

Importing this module registers every family in :data:`common.families.FAMILIES`;
the command-line tools, the benchmark suite and the tests import it first.
"""
from common.families import FAMILIES
from efficientdet.family import EFFICIENTDET
from efficientnet_v2.family import EFFICIENTNET

FAMILIES.register(EFFICIENTDET)
FAMILIES.register(EFFICIENTNET)
