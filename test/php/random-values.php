<?php
/*
 * random-values.php — random nested PHP values, serialized by PHP and
 * unserialized again by PHP, for phpsession's differential test
 * (phpsession/differential_test.go, TestDifferentialRandomPHP).
 *
 * Usage: php test/php/random-values.php <count> <seed>
 *
 * Writes one line per value: "<hex of serialize($v)> <dump>", followed by
 * " <hex of igbinary_serialize($v)> <dump of igbinary_unserialize()>" when
 * the igbinary extension is loaded, where <dump>
 * renders unserialize(serialize($v)) as PHP itself sees it, in the format
 * of unserialize-dump.php plus:
 *
 *   O<hex class>[...]   objects, with PHP's mangled property names
 *                       (\0*\0 protected, \0Class\0 private)
 *   E<hex Class:Case>   enums
 *
 * The values mix every serialize() element: null, bools, 64-bit ints,
 * floats (INF, -INF, NAN, -0.0, exponents, random bit patterns), binary
 * strings, int and string keys, objects with public/protected/private
 * properties, \Serializable objects whose payload is a nested serialize()
 * (so back-references inside payloads use PHP's shared numbering),
 * __serialize objects, enums, object handles shared between places (r:) and
 * PHP references (R:).
 */

declare(strict_types=1);

error_reporting(E_ALL & ~E_DEPRECATED);

class WsgPriv
{
    public $a;
    protected $b;
    private $c;

    public function __construct($a = null, $b = null, $c = null)
    {
        $this->a = $a;
        $this->b = $b;
        $this->c = $c;
    }
}

class WsgSer implements Serializable
{
    public $d;

    public function __construct($d = null)
    {
        $this->d = $d;
    }

    public function serialize()
    {
        return serialize($this->d);
    }

    public function unserialize($s)
    {
        $this->d = unserialize($s);
    }
}

class WsgMagic
{
    public $x;

    public function __construct($x = null)
    {
        $this->x = $x;
    }

    public function __serialize(): array
    {
        return [$this->x, 'k|' => 1];
    }

    public function __unserialize(array $data): void
    {
        $this->x = $data;
    }
}

enum WsgSuit: string
{
    case Hearts = 'H';
    case Spades = 'S';
}

function rnd_string(): string
{
    switch (mt_rand(0, 4)) {
        case 0: return '';
        case 1: return substr('a|b;c"d}{s:1:"x";|', 0, mt_rand(0, 18));
        case 2: return 'ünïcødé 😀';
        default:
            $s = '';
            for ($i = mt_rand(0, 12); $i > 0; --$i) {
                $s .= chr(mt_rand(0, 255));
            }

            return $s;
    }
}

function rnd_float(): float
{
    switch (mt_rand(0, 7)) {
        case 0: return INF;
        case 1: return -INF;
        case 2: return NAN;
        case 3: return -0.0;
        case 4: return mt_rand() / mt_getrandmax() * 10 ** mt_rand(-300, 300);
        case 5: return (float) mt_rand(-1000, 1000);
        default:
            $f = unpack('E', pack('J', mt_rand(0, PHP_INT_MAX) ^ (mt_rand(0, 1) << 63)))[1];

            return is_nan($f) ? 0.5 : $f;
    }
}

function rnd_scalar()
{
    switch (mt_rand(0, 6)) {
        case 0: return null;
        case 1: return 1 === mt_rand(0, 1);
        case 2: return mt_rand(-100, 100);
        case 3: return [PHP_INT_MAX, PHP_INT_MIN, 0, -1, mt_rand(PHP_INT_MIN, PHP_INT_MAX)][mt_rand(0, 4)];
        case 4: return rnd_float();
        default: return rnd_string();
    }
}

/** @var list<object> objects that may appear again (r:) */
$GLOBALS['pool'] = [];

function rnd_value(int $depth)
{
    if ($depth > 4 || mt_rand(0, 9) < 4) {
        return rnd_scalar();
    }
    switch (mt_rand(0, 8)) {
        case 0:
        case 1:
        case 2:
            $a = [];
            for ($n = mt_rand(0, 5); $n > 0; --$n) {
                $k = mt_rand(0, 2) ? mt_rand(-3, 20) : rnd_string();
                $a[$k] = rnd_value($depth + 1);
            }
            // PHP references between elements.
            $keys = array_keys($a);
            if (count($keys) >= 2 && 0 === mt_rand(0, 2)) {
                $a[$keys[0]] = &$a[$keys[1]];
            }

            return $a;
        case 3:
            $o = new stdClass();
            for ($n = mt_rand(0, 3); $n > 0; --$n) {
                $o->{"p".rnd_string()} = rnd_value($depth + 1);
            }
            $GLOBALS['pool'][] = $o;

            return $o;
        case 4:
            $o = new WsgPriv(rnd_value($depth + 1), rnd_value($depth + 1), rnd_value($depth + 1));
            $GLOBALS['pool'][] = $o;

            return $o;
        case 5:
            // A shared object: serialize() writes r: to its first slot.
            if ($GLOBALS['pool']) {
                return $GLOBALS['pool'][mt_rand(0, count($GLOBALS['pool']) - 1)];
            }

            return null;
        case 6:
            $o = new WsgSer(rnd_value($depth + 1));
            $GLOBALS['pool'][] = $o;

            return $o;
        case 7:
            return new WsgMagic(rnd_value($depth + 1));
        default:
            return mt_rand(0, 1) ? WsgSuit::Hearts : WsgSuit::Spades;
    }
}

function wsg_dump($v, int $depth): string
{
    if ($depth > 6) {
        return '~';
    }
    if (null === $v) {
        return 'N';
    }
    if (is_bool($v)) {
        return $v ? 'b1' : 'b0';
    }
    if (is_int($v)) {
        return 'i'.$v;
    }
    if (is_float($v)) {
        return is_nan($v) ? 'dNAN' : 'd'.bin2hex(pack('E', $v));
    }
    if (is_string($v)) {
        return 's'.bin2hex($v);
    }
    if ($v instanceof UnitEnum) {
        return 'E'.bin2hex(get_class($v).':'.$v->name);
    }
    $prefix = '';
    if (is_object($v)) {
        $prefix = 'O'.bin2hex(get_class($v));
        $v = (array) $v;
    }
    $out = $prefix.'[';
    foreach ($v as $k => $x) {
        $out .= (is_int($k) ? 'i'.$k : 's'.bin2hex((string) $k)).'='.wsg_dump($x, $depth + 1).',';
    }

    return $out.']';
}

[$_, $count, $seed] = $argv + [null, '1000', '1'];
$withIgbinary = extension_loaded('igbinary');
mt_srand((int) $seed);
for ($i = 0; $i < (int) $count; ++$i) {
    $GLOBALS['pool'] = [];
    $v = rnd_value(0);
    $s = serialize($v);
    $back = unserialize($s);
    $line = bin2hex($s).' '.wsg_dump($back, 0);
    if ($withIgbinary) {
        $ig = igbinary_serialize($v);
        $line .= ' '.bin2hex($ig).' '.wsg_dump(igbinary_unserialize($ig), 0);
    }
    echo $line, "\n";
}
